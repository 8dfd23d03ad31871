"""The per-room parts of a /sync response: timeline, state, summary, invite and knock state.

Positions are stream orderings; a timeline covers ``(after, upto]``. ``prev_batch`` is the
/messages token for "events before the first timeline event": a token ``sN`` means "after event
N", and /messages with ``dir=b`` and ``from=sN`` returns events with stream ordering ``<= N``, so
``prev_batch`` is ``s{first - 1}`` (``s{upto}`` for an empty timeline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.events.client_format import strip_state_event
from homeserver.events.event import Event
from homeserver.rooms.prejoin_state import stripped_state_keys
from homeserver.storage import Store
from homeserver.storage.state import StateMap
from homeserver.streams.tokens import StreamToken
from homeserver.sync.filters import EventFilter, SyncFilter
from homeserver.visibility.client import ReadAccess, filter_events_for_client, room_access
from homeserver.visibility.serialize import serialize_for_client

#: At most this many members are named as heroes of an unnamed room.
MAX_HEROES = 5
#: A selective timeline filter reads at most this many pages before giving up (limited=True).
MAX_TIMELINE_PAGES = 10
_MIN_PAGE = 50


@dataclass(frozen=True, slots=True)
class SyncContext:
    user_id: str
    filter: SyncFilter
    since: StreamToken | None
    now: StreamToken
    full_state: bool
    now_ms: int
    #: the requester's transaction-ID scope (its device), to mark its own sends.
    txn_scope: str | None = None


@dataclass(frozen=True, slots=True)
class Timeline:
    events: list[Event]
    limited: bool
    #: the stream position the timeline ends at (inclusive).
    upto: int

    def prev_batch(self, now: StreamToken) -> str:
        first = self.events[0].internal.stream_ordering if self.events else None
        return str(now.with_events(self.upto if first is None else first - 1))


class RoomSyncBuilder:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def serialize(self, ctx: SyncContext, events: list[Event]) -> list[dict[str, Any]]:
        """Client JSON (redactions applied, as /messages shows them) without ``room_id``, which
        /sync's format leaves out (the room is the key the events sit under)."""
        out = await serialize_for_client(self.store, events, ctx.now_ms)
        for body in out:
            body.pop("room_id", None)
        own = [e.event_id for e in events if e.sender == ctx.user_id]
        if own and ctx.txn_scope is not None:
            # The sender's device matches its local echo by transaction ID.
            txn_ids = await self.store.room_use.get_transaction_ids(own, ctx.user_id, ctx.txn_scope)
            for body in out:
                txn_id = txn_ids.get(body["event_id"])
                if txn_id is not None:
                    body.setdefault("unsigned", {})["transaction_id"] = txn_id
        return out

    async def timeline(
        self,
        ctx: SyncContext,
        room_id: str,
        after: int,
        upto: int,
        limit: int,
        event_filter: EventFilter,
        *,
        joined: bool = False,
    ) -> Timeline:
        """The last ``limit`` events in ``(after, upto]`` that pass ``event_filter`` and that
        the user may see (history visibility). ``joined``: the user is joined now (no need
        to read their membership again)."""
        filtered = bool(event_filter.definition)
        page = limit + 1 if not filtered else max(limit + 1, _MIN_PAGE)
        # A filter holding only a limit passes every event: a thousand-event timeline is not
        # run through it event by event.
        judges = filtered and event_filter.judges_events
        access = (
            ReadAccess("join") if joined else await room_access(self.store, room_id, ctx.user_id)
        )
        collected: list[Event] = []
        upper = upto
        exhausted = False
        for _ in range(MAX_TIMELINE_PAGES):
            batch = await self.store.sync.get_room_events_desc(room_id, after, upper, page)
            matching = [e for e in batch if event_filter.allows_event(e)] if judges else batch
            if access is not None:
                collected.extend(
                    await filter_events_for_client(self.store, ctx.user_id, matching, access=access)
                )
            if len(batch) < page:
                exhausted = True
                break
            if len(collected) > limit:
                break
            last = batch[-1].internal.stream_ordering
            upper = (last if last is not None else upper) - 1
        limited = len(collected) > limit or not exhausted
        chosen = collected[:limit]
        chosen.reverse()
        return Timeline(chosen, limited, upto)

    async def state_after_position(self, room_id: str, position: int) -> StateMap | None:
        """The room's state at a stream position (None: the room had no event by then)."""
        event_id = await self.store.sync.get_last_event_id_at(room_id, position)
        if event_id is None:
            return None
        return await self.store.state.get_state_ids_at_event(event_id)

    async def state_at_timeline_start(self, room_id: str, timeline: Timeline) -> StateMap:
        if timeline.events:
            state = await self.store.state.get_state_ids_at_event(
                timeline.events[0].event_id, before=True
            )
            if state is not None:
                return state
        return await self.state_after_position(room_id, timeline.upto) or {}

    async def state_events(
        self, ctx: SyncContext, room_id: str, timeline: Timeline, since_position: int | None
    ) -> list[Event]:
        """The state section: the state at the timeline's start (``since_position`` None), or
        only what changed between ``since_position`` and the timeline's start; events already
        in the timeline left out."""
        start = await self.state_at_timeline_start(room_id, timeline)
        if since_position is None:
            ids = list(start.values())
        else:
            before = await self.state_after_position(room_id, since_position) or {}
            ids = [eid for key, eid in start.items() if before.get(key) != eid]
        in_timeline = {e.event_id for e in timeline.events}
        found = await self.store.events.get_events(i for i in ids if i not in in_timeline)
        events = [e for e in found.values() if ctx.filter.state.allows_event(e)]
        events.sort(key=lambda e: e.internal.stream_ordering or 0)
        return events

    async def summary(self, room_id: str, user_id: str) -> dict[str, Any]:
        joined = await self.store.state.get_current_members(room_id, "join")
        invited = await self.store.state.get_current_members(room_id, "invite")
        summary: dict[str, Any] = {
            "m.joined_member_count": len(joined),
            "m.invited_member_count": len(invited),
        }
        name = await self.store.state.get_current_state_event(room_id, "m.room.name")
        alias = await self.store.state.get_current_state_event(room_id, "m.room.canonical_alias")
        if (name is None or not name.content.get("name")) and (
            alias is None or not alias.content.get("alias")
        ):
            heroes = [u for u in sorted(set(joined) | set(invited)) if u != user_id]
            if not heroes:
                gone = await self.store.state.get_current_members(room_id, "leave")
                gone += await self.store.state.get_current_members(room_id, "ban")
                heroes = [u for u in sorted(set(gone)) if u != user_id]
            summary["m.heroes"] = heroes[:MAX_HEROES]
        return summary

    async def stripped_state(self, ctx: SyncContext, member: Event) -> list[dict[str, Any]]:
        """Stripped pre-join state of the room as of an invite or knock (with an invite, the
        inviter's membership too), then that event."""
        state = await self.store.state.get_state_ids_at_event(member.event_id) or {}
        keys = stripped_state_keys(member.content.get("membership"), member.sender)
        ids = [state[key] for key in keys if key in state and state[key] != member.event_id]
        found = await self.store.events.get_events(ids)
        stripped = [strip_state_event(found[i]) for i in ids if i in found]
        stripped.extend(await self.serialize(ctx, [member]))
        return stripped
