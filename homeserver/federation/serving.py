"""Serving a room's events and state to other servers: ``/state``, ``/state_ids``, ``/event``,
``/event_auth``, ``/backfill`` and ``/get_missing_events`` (spec: server-server API "Retrieving
events", "Backfilling and retrieving missing events"; §9 of federation-minimum.md).

Only a server with a user *joined* to the room now is answered (403 ``M_FORBIDDEN`` otherwise),
as Synapse's ``assert_host_in_room`` does for all six: a server whose only membership is a ban,
an invite or a past leave learns nothing, whatever event ID reached it. A server being invited or
joining needs none of them: the invite, ``make_join`` and ``send_join`` answers carry the state
it needs. The room's server ACL must admit the server too (403); unknown rooms and events are
404. Rejected events are never served, and events redacted here are served redacted.

History visibility (spec: "Serving events to servers"; Synapse's ``filter_events_for_server``)
then applies to each event ``/event``, ``/backfill`` and ``/get_missing_events`` return
(:func:`homeserver.visibility.server.hidden_from`, the server side of the one visibility
module), judged by the room state *after* the event, as Synapse does. An event the server may
not see is served redacted, not left out, so the DAG stays walkable (its event ID and
signatures still verify). ``/state``, ``/state_ids`` and ``/event_auth`` answer the
joined server in full: its own auth and state resolution need them.

``get_missing_events`` answers at most 20 events and ``/backfill`` at most 100 (larger limits are
clamped, as Synapse does).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from typing import Any

from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, Forbidden, NotFound
from homeserver.events.event import Event
from homeserver.events.redaction import prune_event_dict
from homeserver.federation.acl import ACL_EVENT_TYPE, server_allowed_by_acl
from homeserver.storage import Store

# The rule lives in the visibility module; its names stay importable from here.
from homeserver.visibility.rules import event_visible_to_server as event_visible_to_server
from homeserver.visibility.rules import server_may_see as server_may_see
from homeserver.visibility.server import hidden_from

#: the most events one /backfill answer holds (Synapse's cap).
MAX_BACKFILL_EVENTS = 100
#: the most events one /get_missing_events answer holds (Synapse's cap).
MAX_MISSING_EVENTS = 20


def served_pdu(event: Event, *, hidden: bool = False) -> dict[str, Any]:
    """The PDU as served: redacted when the asking server may not see it (``hidden``) or when
    it has been redacted here."""
    if hidden or event.internal.redacted:
        return prune_event_dict(event.room_version, event.federation_json())
    return event.federation_json()


class FederationEventServer:
    def __init__(self, store: Store, server_name: str, clock: WallClock) -> None:
        self.store = store
        self.server_name = server_name
        self.clock = clock

    # --- access ----------------------------------------------------------------------------
    async def check_room_access(self, origin: str, room_id: str) -> None:
        """404 for a room we do not know, 403 unless ``origin`` has a user joined to it now and
        the room's server ACL admits it."""
        if await self.store.rooms.get_room(room_id) is None:
            raise NotFound("Unknown room")
        if not await self.store.state.is_host_joined(room_id, origin):
            raise Forbidden("Your server has no user joined to this room")
        acl = await self.store.state.get_current_state_event(room_id, ACL_EVENT_TYPE, "")
        if not server_allowed_by_acl(None if acl is None else acl.content, origin):
            raise Forbidden("Server is banned from the room")

    async def _room_event(self, room_id: str, event_id: str) -> Event:
        event = await self.store.events.get_event(event_id)
        if event is None or event.room_id != room_id or event.rejected:
            raise NotFound("Unknown event")
        return event

    async def _events(self, event_ids: Iterable[str]) -> list[Event]:
        ids = list(event_ids)
        found = await self.store.events.get_events(ids)
        return [found[i] for i in ids if i in found and not found[i].rejected]

    def transaction(self, pdus: list[dict[str, Any]]) -> dict[str, Any]:
        """The "transaction" shape of /event and /backfill answers."""
        return {"origin": self.server_name, "origin_server_ts": self.clock(), "pdus": pdus}

    # --- history visibility ----------------------------------------------------------------
    async def visible_pdus(self, origin: str, events: Sequence[Event]) -> list[dict[str, Any]]:
        """``events`` as ``origin`` may see them: those it may not see redacted."""
        hidden = await hidden_from(self.store, self.server_name, origin, events)
        return [served_pdu(e, hidden=e.event_id in hidden) for e in events]

    # --- state -----------------------------------------------------------------------------
    async def state_ids(
        self, origin: str, room_id: str, event_id: str
    ) -> tuple[list[str], list[str]]:
        """The state before ``event_id`` and the auth chain of that state, as event IDs."""
        await self.check_room_access(origin, room_id)
        await self._room_event(room_id, event_id)
        state = await self.store.state.get_state_ids_at_event(event_id, before=True)
        if state is None:
            raise NotFound("No state known at this event")
        state_ids = sorted(set(state.values()))
        chain = await self.store.events.get_auth_chain_ids(room_id, state_ids)
        return state_ids, sorted(chain)

    async def state(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        state_ids, chain_ids = await self.state_ids(origin, room_id, event_id)
        return {
            "pdus": [served_pdu(e) for e in await self._events(state_ids)],
            "auth_chain": [served_pdu(e) for e in await self._events(chain_ids)],
        }

    async def event_auth(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        await self.check_room_access(origin, room_id)
        await self._room_event(room_id, event_id)
        chain = await self.store.events.get_auth_chain_ids(room_id, [event_id])
        events = sorted(await self._events(chain), key=lambda e: (e.depth, e.event_id))
        return {"auth_chain": [served_pdu(e) for e in events]}

    async def event(self, origin: str, event_id: str) -> dict[str, Any]:
        event = await self.store.events.get_event(event_id)
        if event is None or event.rejected:
            raise NotFound("Unknown event")
        await self.check_room_access(origin, event.room_id)
        return self.transaction(await self.visible_pdus(origin, [event]))

    # --- history ---------------------------------------------------------------------------
    async def backfill(
        self, origin: str, room_id: str, from_ids: Sequence[str], limit: int
    ) -> dict[str, Any]:
        """``from_ids`` and their predecessors, deepest first, at most ``limit``."""
        await self.check_room_access(origin, room_id)
        limit = max(0, min(limit, MAX_BACKFILL_EVENTS))
        found: list[Event] = []
        loaded: dict[str, Event] = {}
        heap: list[tuple[int, str]] = []

        def push(events: Iterable[Event]) -> None:
            for event in events:
                if event.room_id == room_id and event.event_id not in loaded:
                    loaded[event.event_id] = event
                    heapq.heappush(heap, (-event.depth, event.event_id))

        push(await self._events(from_ids))
        while heap and len(found) < limit:
            _, event_id = heapq.heappop(heap)
            event = loaded[event_id]
            found.append(event)
            push(await self._events(p for p in event.prev_event_ids() if p not in loaded))
        return self.transaction(await self.visible_pdus(origin, found))

    async def get_missing_events(
        self,
        origin: str,
        room_id: str,
        earliest: Sequence[str],
        latest: Sequence[str],
        limit: int,
        min_depth: int,
    ) -> dict[str, Any]:
        """Breadth first along prev events from ``latest`` (not included), skipping
        ``earliest`` and events below ``min_depth``; at most ``limit``, oldest first."""
        await self.check_room_access(origin, room_id)
        limit = max(0, min(limit, MAX_MISSING_EVENTS))
        seen = set(earliest) | set(latest)
        frontier = [e for e in await self._events(latest) if e.room_id == room_id]
        found: list[Event] = []
        while frontier and len(found) < limit:
            prev_ids = [p for e in frontier for p in e.prev_event_ids() if p not in seen]
            prev_ids = list(dict.fromkeys(prev_ids))
            seen.update(prev_ids)
            frontier = []
            for prev in await self._events(prev_ids):
                if prev.room_id != room_id or prev.depth < min_depth:
                    continue
                if len(found) == limit:
                    break
                found.append(prev)
                frontier.append(prev)
        found.sort(key=lambda e: (e.depth, e.internal.stream_ordering or 0))
        return {"events": await self.visible_pdus(origin, found)}


def parse_limit(value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadRequest("'limit' must be an integer", Codes.INVALID_PARAM)
    try:
        return int(value)
    except ValueError:
        raise BadRequest("'limit' must be an integer", Codes.INVALID_PARAM) from None
