"""Outliers and auth chains of received events: storing events fetched as state or auth
(each authorised against its own auth events), fetching an event's missing auth events with
``event_auth``, and the auth rules against a state map.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from homeserver.auth.rules import AuthError, check_auth_rules, check_event_auth
from homeserver.auth.selection import auth_types_for_event
from homeserver.events.event import Event
from homeserver.events.state_keys import CREATE_KEY, StateKey
from homeserver.federation.client import FederationError
from homeserver.federation.remote_fetch import RemoteEventFetcher
from homeserver.room_versions import RoomVersion
from homeserver.storage import Store

logger = logging.getLogger(__name__)


def create_event_for(
    event: Event, auth_events: Sequence[Event], known: Mapping[str, Event]
) -> Event | None:
    """The room's create event for authorising ``event``: among its auth events, or (v12,
    where events do not cite it) the one its room ID names, if ``known``."""
    for auth_event in auth_events:
        if auth_event.is_state() and auth_event.state_tuple == CREATE_KEY:
            return auth_event
    if event.room_version.room_id_is_create_event_hash:
        return known.get("$" + event.room_id[1:])
    return None


class AuthChains:
    def __init__(self, store: Store, fetcher: RemoteEventFetcher) -> None:
        self.store = store
        self.fetcher = fetcher

    async def persist_outliers(self, room_version: RoomVersion, events: Sequence[Event]) -> None:
        """Store checked events as outliers, each authorised against its own auth events (those
        failing are stored rejected; those whose auth events are nowhere to be found are not
        stored). Events already stored are left as they are."""
        if not events:
            return
        present = await self.store.events.get_event_ids_present(e.event_id for e in events)
        pending = {e.event_id: e for e in events if e.event_id not in present}
        needed = {a for e in pending.values() for a in e.auth_event_ids()}
        if room_version.room_id_is_create_event_hash:
            # v12 events do not cite the create event, but their auth reads it.
            needed.update("$" + e.room_id[1:] for e in pending.values())
        needed -= pending.keys()
        known: dict[str, Event] = dict(await self.store.events.get_events(needed))
        ordered: list[Event] = []
        # Auth events first: each round takes the events whose auth events are all known.
        while pending:
            ready = [e for e in pending.values() if all(a in known for a in e.auth_event_ids())]
            if not ready:
                logger.info("not storing %d outliers with unknown auth events", len(pending))
                break
            for event in sorted(ready, key=lambda e: e.depth):
                del pending[event.event_id]
                _auth_outlier(room_version, event, known)
                known[event.event_id] = event
                ordered.append(event)
        if ordered:
            for event in ordered:
                event.internal.outlier = True
            await self.store.persist_events([(e, None) for e in ordered])

    async def auth_events_of(
        self, origin: str, room_version: RoomVersion, event: Event
    ) -> dict[str, Event]:
        """``event``'s auth events we have, after asking ``origin`` for its auth chain (stored
        as outliers) when some are missing."""
        wanted = event.auth_event_ids()
        found = await self.store.events.get_events(wanted)
        if all(a in found for a in wanted):
            return dict(found)
        try:
            chain = await self.fetcher.get_auth_chain(
                origin, room_version, event.room_id, event.event_id
            )
        except FederationError as e:
            logger.info("event_auth for %s from %s failed: %s", event.event_id, origin, e)
            chain = []
        await self.persist_outliers(room_version, chain)
        return dict(await self.store.events.get_events(wanted))

    async def check_against(
        self, room_version: RoomVersion, event: Event, state: Mapping[StateKey, str]
    ) -> None:
        """The auth rules for ``event`` with its auth events taken from ``state``."""
        keys = [
            CREATE_KEY,
            *auth_types_for_event(
                room_version, event.type, event.sender, event.state_key, event.content
            ),
        ]
        ids = {state[k] for k in keys if k in state}
        events = await self.store.events.get_events(ids)
        check_auth_rules(room_version, event, {e.state_tuple: e for e in events.values()})


def _auth_outlier(room_version: RoomVersion, event: Event, known: Mapping[str, Event]) -> None:
    auth_events = [known[a] for a in event.auth_event_ids() if a in known]
    create = create_event_for(event, auth_events, known)
    try:
        check_event_auth(room_version, event, auth_events, create)
    except AuthError as e:
        event.internal.rejected_reason = e.reason
