"""The per-room parts of a /sync response: timeline, state, summary, invite and knock state.

Positions are stream orderings; a timeline covers ``(after, upto]``. ``prev_batch`` is the
/messages token for "events before the first timeline event": a token ``sN`` means "after event
N", and /messages with ``dir=b`` and ``from=sN`` returns events with stream ordering ``<= N``, so
``prev_batch`` is ``s{first - 1}`` (``s{upto}`` for an empty timeline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.bounded_cache import BoundedTtlCache
from homeserver.events.client_format import strip_state_event
from homeserver.events.event import Event
from homeserver.rooms.prejoin_state import stripped_state_keys
from homeserver.storage import Store
from homeserver.storage.state import StateMap
from homeserver.streams.tokens import StreamToken
from homeserver.sync.filters import EventFilter, SyncFilter
from homeserver.sync.lazy_members import MEMBER, keep_members, members_needed
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
    #: with lazy loading and without ``include_redundant_members``: what member events this
    #: device was already sent (user ID → event ID), updated as they are sent.
    sent_members: BoundedTtlCache[str, str] | None = None


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

    async def serialize(
        self, ctx: SyncContext, events: list[Event], *, prev_content: bool = False
    ) -> list[dict[str, Any]]:
        """Client JSON (redactions applied, as /messages shows them) without ``room_id``, which
        /sync's format leaves out (the room is the key the events sit under). Timelines pass
        ``prev_content`` (as Synapse: state sections do not carry it)."""
        out = await serialize_for_client(self.store, events, ctx.now_ms, prev_content=prev_content)
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
        self,
        ctx: SyncContext,
        room_id: str,
        timeline: Timeline,
        since_position: int | None,
        *,
        delta: bool = True,
    ) -> list[Event]:
        """The state section: the state at the timeline's start (``since_position`` None), or
        only what changed between ``since_position`` and the timeline's start (``delta``
        False: none of it, the timeline holding every change); events already in the timeline
        left out. With lazy loading, member events as :mod:`homeserver.sync.lazy_members`
        says, less those this device was already sent."""
        start = await self.state_at_timeline_start(room_id, timeline)
        full = since_position is None
        if full:
            ids = dict(start)
        elif delta:
            before = await self.state_after_position(room_id, since_position) or {}
            ids = {key: eid for key, eid in start.items() if before.get(key) != eid}
        else:
            ids = {}
        lazy = ctx.filter.lazy_load_members
        if lazy:
            needed = members_needed(timeline.events)
            if full:
                needed.add(ctx.user_id)
            if full or not timeline.limited:
                # A gappy incremental sync keeps every member change of the gap.
                ids = keep_members(ids, needed)
            for user_id in needed:
                member_id = start.get((MEMBER, user_id))
                if member_id is not None:
                    ids[(MEMBER, user_id)] = member_id
        in_timeline = {e.event_id for e in timeline.events}
        found = await self.store.events.get_events(i for i in ids.values() if i not in in_timeline)
        events = [e for e in found.values() if ctx.filter.state.allows_event(e)]
        if lazy and ctx.sent_members is not None:
            events = self._unsent_members(ctx.sent_members, events, timeline.events)
        events.sort(key=lambda e: e.internal.stream_ordering or 0)
        return events

    @staticmethod
    def _unsent_members(
        sent: BoundedTtlCache[str, str], state: list[Event], timeline: list[Event]
    ) -> list[Event]:
        """``state`` less the member events this device was already sent; what is sent now
        (in state or timeline) remembered."""
        kept = [
            e
            for e in state
            if e.type != MEMBER or e.state_key is None or sent.get(e.state_key) != e.event_id
        ]
        for event in (*kept, *timeline):
            if event.type == MEMBER and event.state_key is not None:
                sent.set(event.state_key, event.event_id)
        return kept

    async def hero_members(
        self,
        ctx: SyncContext,
        room_id: str,
        heroes: list[str],
        state: list[Event],
        timeline: list[Event],
    ) -> list[Event]:
        """With lazy loading, the member events of the room's ``heroes`` the client has not
        got (not in this response's state or timeline, not sent to this device before), so
        that it can name the room after them (as Synapse)."""
        present = {e.state_key for e in (*state, *timeline) if e.type == MEMBER and e.state_key}
        wanted = [h for h in heroes if h not in present]
        if not ctx.filter.lazy_load_members or not wanted:
            return []
        current = await self.store.state.get_current_state_ids(room_id)
        ids = {h: current[(MEMBER, h)] for h in wanted if (MEMBER, h) in current}
        sent = ctx.sent_members
        if sent is not None:
            ids = {h: eid for h, eid in ids.items() if sent.get(h) != eid}
        found = await self.store.events.get_events(ids.values())
        events = [e for e in found.values() if ctx.filter.state.allows_event(e)]
        if sent is not None:
            for event in events:
                if event.state_key is not None:
                    sent.set(event.state_key, event.event_id)
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
        stripped.extend(await self.serialize(ctx, [member], prev_content=True))
        return stripped
