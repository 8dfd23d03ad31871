"""Asking the server a PDU came from for the events we lack (gap filling).

* ``POST /get_missing_events/{roomId}``: the events between our forward extremities and a new
  event whose prev events we do not have;
* ``GET /state_ids/{roomId}?event_id=`` then ``/event/{eventId}`` (or ``/state`` when much is
  missing): the state at a prev event we still lack;
* ``GET /event_auth/{roomId}/{eventId}``: an event's auth chain.

Every PDU that comes back goes through :func:`~homeserver.federation.pdu_checks.check_pdu`
(format, signatures, content hash); those failing are left out. Nothing here stores anything.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from typing import Any, Protocol

from homeserver.events.event import Event
from homeserver.federation.client import fed_path
from homeserver.federation.pdu_checks import EventVerifier, PduRejected, check_pdu
from homeserver.room_versions import RoomVersion

logger = logging.getLogger(__name__)

#: how many events ``get_missing_events`` asks for (Synapse asks for 10).
MISSING_EVENTS_LIMIT = 10
#: above this many unknown state/auth events, fetch the whole state with ``/state`` rather than
#: one ``/event`` request each.
EVENT_BY_EVENT_LIMIT = 20


class FederationRequester(Protocol):
    """The part of :class:`homeserver.federation.client.FederationClient` used here."""

    async def get_json(
        self, destination: str, path: str, query: Any = None, *, timeout: float = 60.0
    ) -> Any: ...

    async def post_json(
        self, destination: str, path: str, content: Any, query: Any = None, *, timeout: float = 60.0
    ) -> Any: ...


def _pdu_list(body: Any, key: str) -> list[Any]:
    value = body.get(key) if isinstance(body, dict) else None
    return value if isinstance(value, list) else []


def _id_list(body: Any, key: str) -> list[str]:
    return [i for i in _pdu_list(body, key) if isinstance(i, str)]


class RemoteEventFetcher:
    def __init__(self, client: FederationRequester, keyring: EventVerifier) -> None:
        self.client = client
        self.keyring = keyring

    async def _checked(
        self, room_version: RoomVersion, room_id: str, pdus: Iterable[Any]
    ) -> list[Event]:
        """The PDUs that pass the receipt checks and belong to ``room_id``."""
        events: dict[str, Event] = {}
        for pdu in pdus:
            try:
                event = await check_pdu(room_version, pdu, self.keyring)
            except PduRejected as e:
                logger.info("dropping a fetched PDU in %s: %s", room_id, e.reason)
                continue
            if event.room_id != room_id:
                logger.info("dropping fetched %s: from another room", event.event_id)
                continue
            events.setdefault(event.event_id, event)
        return list(events.values())

    async def get_missing_events(
        self,
        origin: str,
        room_version: RoomVersion,
        room_id: str,
        *,
        earliest: Sequence[str],
        latest: Sequence[str],
        min_depth: int,
    ) -> list[Event]:
        """The events ``origin`` sends between ``earliest`` and ``latest``, oldest first."""
        body = await self.client.post_json(
            origin,
            fed_path("/_matrix/federation/v1/get_missing_events/{}", room_id),
            {
                "earliest_events": list(earliest),
                "latest_events": list(latest),
                "limit": MISSING_EVENTS_LIMIT,
                "min_depth": min_depth,
            },
        )
        events = await self._checked(room_version, room_id, _pdu_list(body, "events"))
        return sorted(events, key=lambda e: (e.depth, e.origin_server_ts))

    async def get_event(
        self, origin: str, room_version: RoomVersion, room_id: str, event_id: str
    ) -> Event | None:
        body = await self.client.get_json(
            origin, fed_path("/_matrix/federation/v1/event/{}", event_id)
        )
        events = await self._checked(room_version, room_id, _pdu_list(body, "pdus"))
        return next((e for e in events if e.event_id == event_id), None)

    async def get_state_ids(
        self, origin: str, room_id: str, event_id: str
    ) -> tuple[list[str], list[str]]:
        """``(state event IDs before event_id, their auth chain IDs)`` as ``origin`` sees it."""
        body = await self.client.get_json(
            origin,
            fed_path("/_matrix/federation/v1/state_ids/{}", room_id),
            {"event_id": event_id},
        )
        return _id_list(body, "pdu_ids"), _id_list(body, "auth_chain_ids")

    async def get_events(
        self,
        origin: str,
        room_version: RoomVersion,
        room_id: str,
        at_event_id: str,
        event_ids: Collection[str],
    ) -> list[Event]:
        """``event_ids`` (state or auth events at ``at_event_id``) from ``origin``: one by one,
        or through ``/state`` when there are many."""
        if len(event_ids) > EVENT_BY_EVENT_LIMIT:
            body = await self.client.get_json(
                origin,
                fed_path("/_matrix/federation/v1/state/{}", room_id),
                {"event_id": at_event_id},
            )
            pdus = _pdu_list(body, "pdus") + _pdu_list(body, "auth_chain")
            events = await self._checked(room_version, room_id, pdus)
            return [e for e in events if e.event_id in event_ids]
        found: list[Event] = []
        for event_id in event_ids:
            event = await self.get_event(origin, room_version, room_id, event_id)
            if event is not None:
                found.append(event)
        return found

    async def get_auth_chain(
        self, origin: str, room_version: RoomVersion, room_id: str, event_id: str
    ) -> list[Event]:
        body = await self.client.get_json(
            origin, fed_path("/_matrix/federation/v1/event_auth/{}/{}", room_id, event_id)
        )
        return await self._checked(room_version, room_id, _pdu_list(body, "auth_chain"))
