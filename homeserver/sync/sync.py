"""``GET /sync``: everything new for a user since a token, long-polling when nothing is.

One computation reads the current stream positions first and then only data at or below them,
so the ``next_batch`` it returns never skips anything (a race can at worst send something
twice). Everything comes from the database; the notifier only says when to look again.

Room sections:

* ``join`` — on an initial or ``full_state`` sync, or for a room joined since the token: the
  last N events and the full state at the timeline's start. Otherwise only rooms where
  something moved: events after the token (``limited`` with a ``prev_batch`` when more than N),
  the state changed between the token and the timeline's start, new receipts, account data.
* ``invite`` — invites received since the token (all current ones on an initial sync), with
  stripped state.
* ``leave`` — rooms left (or banned from) since the token; on an initial sync only with the
  filter's ``include_leave``. Someone who never joined sees only their leave event.
* ``knock`` — knocks sent since the token (all current ones on an initial sync), with the
  stripped pre-join state; a knock accepted (invite, join) or withdrawn or refused (leave)
  moves the room to that section.

Typing (each joined room's ``ephemeral``) and ``presence`` come from
:mod:`homeserver.sync.ephemeral`; a sync keeps its user online (``set_presence``). The
end-to-end encryption sections (``to_device``, ``device_lists``, key counts) come from
:mod:`homeserver.sync.e2e_sections`; a sync acknowledges the to-device messages its ``since``
is past before anything else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from homeserver.bounded_cache import BoundedTtlCache
from homeserver.clock import WallClock
from homeserver.ephemeral.presence import PresenceService
from homeserver.ephemeral.typing import TypingService
from homeserver.events.event import Event
from homeserver.push.rules import PushRulesService
from homeserver.storage import Store
from homeserver.storage.account_data import AccountDataChanges
from homeserver.storage.receipts import Receipt
from homeserver.storage.stream_ids import (
    ACCOUNT_DATA_STREAM,
    DEVICE_LISTS_STREAM,
    EVENTS_STREAM,
    PRESENCE_STREAM,
    RECEIPTS_STREAM,
    TO_DEVICE_STREAM,
)
from homeserver.storage.sync import MembershipChange
from homeserver.streams.notifier import Notifier
from homeserver.streams.tokens import StreamToken
from homeserver.sync.e2e_sections import acknowledge_to_device, e2e_sections
from homeserver.sync.ephemeral import presence_events, typing_changes, typing_event
from homeserver.sync.filters import SyncFilter
from homeserver.sync.lazy_members import SentMembers
from homeserver.sync.out_of_band import out_of_band_leaves, out_of_band_pending
from homeserver.sync.rooms import RoomSyncBuilder, SyncContext

#: The longest long-poll we honour (clients usually ask for 30 s).
MAX_TIMEOUT_MS = 5 * 60 * 1000
_PRIVATE_RECEIPT = "m.read.private"


@dataclass(frozen=True, slots=True)
class SyncRequest:
    user_id: str
    device_id: str | None
    since: StreamToken | None
    timeout_ms: int
    full_state: bool
    filter: SyncFilter
    #: the transaction-ID scope of the requester's device (``unsigned.transaction_id``).
    txn_scope: str | None = None
    #: /sync's ``set_presence``: online, unavailable or offline (does not touch presence).
    set_presence: str = "online"


class SyncService:
    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        push_rules: PushRulesService,
        clock: WallClock,
        *,
        typing: TypingService | None = None,
        presence: PresenceService | None = None,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.push_rules = push_rules
        self.clock = clock
        self.typing = typing
        self.presence = presence
        self.rooms = RoomSyncBuilder(store)
        self.sent_members = SentMembers(clock)

    async def sync(self, request: SyncRequest) -> dict[str, Any]:
        if self.presence is None:
            return await self._sync(request)
        async with self.presence.syncing(request.user_id, request.set_presence):
            return await self._sync(request)

    async def _sync(self, request: SyncRequest) -> dict[str, Any]:
        deadline = time.monotonic() + min(max(request.timeout_ms, 0), MAX_TIMEOUT_MS) / 1000
        await acknowledge_to_device(self.store, request.user_id, request.device_id, request.since)
        while True:
            generation = self.notifier.generation
            response, empty = await self._compute(request)
            if request.since is None or request.full_state or not empty:
                return response
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return response
            if not await self.notifier.wait(generation, remaining):
                return response

    async def current_token(self) -> StreamToken:
        """Every stream's position now (also what another process's fallback poll compares
        while Redis is unreachable)."""
        return await self._current_token()

    async def _current_token(self) -> StreamToken:
        # Each stream's persisted-up-to position, read together (storage/stream_ids.py).
        positions = await self.store.stream_positions()
        return StreamToken(
            events=positions[EVENTS_STREAM],
            account_data=positions[ACCOUNT_DATA_STREAM],
            receipts=positions[RECEIPTS_STREAM],
            to_device=positions[TO_DEVICE_STREAM],
            device_lists=positions[DEVICE_LISTS_STREAM],
            typing=0 if self.typing is None else self.typing.position,
            presence=positions[PRESENCE_STREAM],
            push=await self.store.push_actions.get_evaluated_position(),
        )

    async def _compute(self, request: SyncRequest) -> tuple[dict[str, Any], bool]:
        # Positions first, memberships after: a membership committed in between is then sent
        # again next time rather than missed.
        now = await self._current_token()
        ctx = SyncContext(
            request.user_id,
            request.filter,
            request.since,
            now,
            request.full_state,
            self.clock(),
            request.txn_scope,
            self._sent_members(request),
        )
        since = request.since
        account_data = await self.store.account_data.get_changes(
            ctx.user_id, None if since is None else since.account_data, now.account_data
        )
        changes: dict[str, list[MembershipChange]] = {}
        if since is not None:
            for change in await self.store.sync.get_membership_changes(
                ctx.user_id, since.events, now.events
            ):
                changes.setdefault(change.room_id, []).append(change)

        # The rooms of every section but leave in one read.
        rooms = await self.store.state.get_rooms_by_membership(
            ctx.user_id, ("join", "invite", "knock")
        )
        joined = [r for r in rooms["join"] if ctx.filter.rooms.allows_room(r)]
        join = await self._joined_rooms(ctx, joined, changes, account_data)
        invite = await self._pending_rooms(ctx, changes, "invite", rooms["invite"])
        knock = await self._pending_rooms(ctx, changes, "knock", rooms["knock"])
        leave = await self._left_rooms(ctx, changes)
        # Memberships in rooms this server is not in (invites received over federation, knocks
        # sent through another server).
        invites, knocks = await out_of_band_pending(self.store, self.rooms, ctx)
        for room_id, section in invites.items():
            invite.setdefault(room_id, section)
        for room_id, section in knocks.items():
            knock.setdefault(room_id, section)
        for room_id, section in (await out_of_band_leaves(self.store, self.rooms, ctx)).items():
            if room_id not in join:
                leave.setdefault(room_id, section)
        global_events = await self._global_account_data(ctx, account_data)
        e2e = await e2e_sections(self.store, ctx.user_id, request.device_id, since, now)
        presence = await presence_events(self.store, self.presence, ctx)
        response = {
            "next_batch": str(replace(now, to_device=e2e.to_device_upto)),
            "rooms": {"join": join, "invite": invite, "leave": leave, "knock": knock},
            "account_data": {"events": global_events},
            "presence": {"events": presence},
        }
        e2e.apply(response)
        empty = not (join or invite or leave or knock or global_events or presence or e2e.has_news)
        return response, empty

    def _sent_members(self, request: SyncRequest) -> BoundedTtlCache[str, str] | None:
        """The device's memory of member events sent (lazy loading without redundant
        members), forgotten when a new sync sequence starts."""
        sync_filter = request.filter
        if not sync_filter.lazy_load_members or sync_filter.include_redundant_members:
            return None
        if request.since is None:
            self.sent_members.forget(request.user_id, request.device_id)
        return self.sent_members.for_device(request.user_id, request.device_id)

    # --- global account data -----------------------------------------------------------
    async def _global_account_data(
        self, ctx: SyncContext, changes: AccountDataChanges
    ) -> list[dict[str, Any]]:
        allowed = ctx.filter.account_data
        events = [
            {"type": t, "content": c} for t, c in changes.global_data.items() if allowed.allows(t)
        ]
        if allowed.allows("m.push_rules"):
            changed_at = await self.store.account_data.get_push_rules_position(ctx.user_id)
            if ctx.since is None or ctx.full_state or changed_at > ctx.since.account_data:
                content = await self.push_rules.get_push_rules_content(ctx.user_id)
                events.append({"type": "m.push_rules", "content": content})
        return events

    # --- joined rooms --------------------------------------------------------------------
    async def _joined_rooms(
        self,
        ctx: SyncContext,
        room_ids: list[str],
        changes: dict[str, list[MembershipChange]],
        account_data: AccountDataChanges,
    ) -> dict[str, Any]:
        since = ctx.since
        receipts = await self.store.receipts.get_receipts(
            room_ids, None if since is None else since.receipts, ctx.now.receipts
        )
        receipts_by_room: dict[str, list[Receipt]] = {}
        for receipt in receipts:
            receipts_by_room.setdefault(receipt.room_id, []).append(receipt)
        moved: set[str] = set()
        if since is not None:
            moved = await self.store.sync.get_rooms_changed(room_ids, since.events, ctx.now.events)
            # Notifications found since the token (counts that moved after their events were
            # sent): the room is sent again with its new counts.
            moved |= await self.store.push_actions.rooms_with_actions_between(
                ctx.user_id, room_ids, since.push, ctx.now.push
            )
        typing = typing_changes(self.typing, ctx, room_ids)
        result: dict[str, Any] = {}
        for room_id in room_ids:
            newly_joined = False
            if since is not None and room_id in changes:
                newly_joined = not await self._was_joined_at(ctx, room_id, since.events)
            full = since is None or ctx.full_state or newly_joined
            room_receipts = receipts_by_room.get(room_id, [])
            room_data = account_data.rooms.get(room_id, {})
            typers = typing.get(room_id)
            if (
                not full
                and room_id not in moved
                and not room_receipts
                and not room_data
                and typers is None
            ):
                continue
            result[room_id] = await self._joined_room(
                ctx, room_id, newly_joined, room_receipts, room_data, typers
            )
        await self._unread_counts(ctx, result)
        return result

    async def _unread_counts(self, ctx: SyncContext, rooms: dict[str, Any]) -> None:
        """``unread_notifications`` of each room sent, and with the timeline filter's
        ``unread_thread_notifications`` the main timeline's counts there and each thread's in
        ``unread_thread_notifications`` (spec "Receiving notifications")."""
        if not rooms:
            return
        counts = await self.store.push_actions.get_room_counts(ctx.user_id, list(rooms))
        threaded = ctx.filter.timeline.definition.get("unread_thread_notifications") is True
        for room_id, section in rooms.items():
            room = counts[room_id]
            shown = room.main if threaded else room.total
            section["unread_notifications"] = {
                "notification_count": shown.notifications,
                "highlight_count": shown.highlights,
            }
            if threaded:
                section["unread_thread_notifications"] = {
                    root: {"notification_count": c.notifications, "highlight_count": c.highlights}
                    for root, c in room.threads.items()
                }

    async def _was_joined_at(self, ctx: SyncContext, room_id: str, position: int) -> bool:
        state = await self.rooms.state_after_position(room_id, position)
        member_id = (state or {}).get(("m.room.member", ctx.user_id))
        if member_id is None:
            return False
        member = await self.store.events.get_event(member_id)
        return member is not None and member.membership == "join"

    async def _joined_room(
        self,
        ctx: SyncContext,
        room_id: str,
        newly_joined: bool,
        receipts: list[Receipt],
        account_data: dict[str, dict[str, Any]],
        typers: list[str] | None = None,
    ) -> dict[str, Any]:
        since = ctx.since
        incremental = since is not None and not newly_joined
        after = since.events if since is not None and incremental else 0
        timeline = await self.rooms.timeline(
            ctx,
            room_id,
            after,
            ctx.now.events,
            ctx.filter.timeline_limit,
            ctx.filter.timeline,
            joined=True,
        )
        if incremental and not ctx.full_state:
            assert since is not None
            # An unfiltered, unlimited timeline holds every change since the last sync.
            needs_delta = timeline.limited or bool(ctx.filter.timeline.definition)
            state = (
                await self.rooms.state_events(
                    ctx, room_id, timeline, since.events, delta=needs_delta
                )
                if needs_delta or ctx.filter.lazy_load_members
                else []
            )
        else:
            state = await self.rooms.state_events(ctx, room_id, timeline, None)
        summary = await self.rooms.summary(room_id, ctx.user_id)
        state += await self.rooms.hero_members(
            ctx, room_id, summary.get("m.heroes", []), state, timeline.events
        )
        ephemeral = self._receipt_events(ctx, room_id, receipts)
        ephemeral.extend(typing_event(ctx, room_id, typers, full=not incremental))
        room_account_data = [
            {"type": t, "content": c}
            for t, c in account_data.items()
            if ctx.filter.room_account_data.allows(t, room_id=room_id)
        ]
        return {
            "timeline": {
                "events": await self.rooms.serialize(ctx, timeline.events, prev_content=True),
                "limited": timeline.limited,
                "prev_batch": timeline.prev_batch(ctx.now),
            },
            "state": {"events": await self.rooms.serialize(ctx, state)},
            "account_data": {"events": room_account_data},
            "ephemeral": {"events": ephemeral},
            "unread_notifications": {},
            "summary": summary,
        }

    def _receipt_events(
        self, ctx: SyncContext, room_id: str, receipts: list[Receipt]
    ) -> list[dict[str, Any]]:
        if not receipts or not ctx.filter.ephemeral.allows("m.receipt", room_id=room_id):
            return []
        content: dict[str, dict[str, dict[str, Any]]] = {}
        for r in receipts:
            # Private receipts are for their owner's other devices only.
            if r.receipt_type == _PRIVATE_RECEIPT and r.user_id != ctx.user_id:
                continue
            data: dict[str, Any] = {"ts": r.ts}
            if r.thread_id is not None:
                data["thread_id"] = r.thread_id
            content.setdefault(r.event_id, {}).setdefault(r.receipt_type, {})[r.user_id] = data
        return [{"type": "m.receipt", "content": content}] if content else []

    # --- invites and knocks ---------------------------------------------------------------
    async def _pending_rooms(
        self,
        ctx: SyncContext,
        changes: dict[str, list[MembershipChange]],
        membership: str,
        room_ids: list[str],
    ) -> dict[str, Any]:
        """The ``invite`` or ``knock`` section: the rooms ``room_ids`` where the user's current
        membership is ``membership``, each with the stripped state as of that event, then the
        event."""
        section = "invite_state" if membership == "invite" else "knock_state"
        result: dict[str, Any] = {}
        for room_id in room_ids:
            if not ctx.filter.rooms.allows_room(room_id):
                continue
            if ctx.since is not None and not ctx.full_state and room_id not in changes:
                continue
            member = await self.store.state.get_current_state_event(
                room_id, "m.room.member", ctx.user_id
            )
            if member is None or member.membership != membership:
                continue
            if (member.internal.stream_ordering or 0) > ctx.now.events:
                continue  # committed after this sync's position: next time
            events = await self.rooms.stripped_state(ctx, member)
            result[room_id] = {section: {"events": events}}
        return result

    # --- left rooms ----------------------------------------------------------------------
    async def _left_rooms(
        self, ctx: SyncContext, changes: dict[str, list[MembershipChange]]
    ) -> dict[str, Any]:
        leaves: dict[str, Event] = {}
        if ctx.since is None:
            if not ctx.filter.include_leave:
                return {}
            forgotten = await self.store.room_use.get_forgotten_room_ids(ctx.user_id)
            for membership in ("leave", "ban"):
                for room_id in await self.store.state.get_rooms_for_user(ctx.user_id, membership):
                    if room_id in forgotten:
                        continue
                    event = await self.store.state.get_current_state_event(
                        room_id, "m.room.member", ctx.user_id
                    )
                    if event is not None and (event.internal.stream_ordering or 0) <= (
                        ctx.now.events
                    ):
                        leaves[room_id] = event
        else:
            last_ids = {room_id: changed[-1].event_id for room_id, changed in changes.items()}
            found = await self.store.events.get_events(last_ids.values())
            for room_id, event_id in last_ids.items():
                event = found.get(event_id)
                if event is not None and event.membership in ("leave", "ban"):
                    leaves[room_id] = event
        result: dict[str, Any] = {}
        for room_id, leave in leaves.items():
            if ctx.filter.rooms.allows_room(room_id):
                result[room_id] = await self._left_room(ctx, room_id, leave)
        return result

    async def _left_room(self, ctx: SyncContext, room_id: str, leave: Event) -> dict[str, Any]:
        upto = leave.internal.stream_ordering or ctx.now.events
        before = await self.store.state.get_state_ids_at_event(leave.event_id, before=True) or {}
        member_id = before.get(("m.room.member", ctx.user_id))
        member = None if member_id is None else await self.store.events.get_event(member_id)
        if member is None or member.membership != "join":
            # Never joined (a refused invite, a ban while invited): only their own event.
            return {
                "timeline": {
                    "events": await self.rooms.serialize(ctx, [leave], prev_content=True),
                    "limited": False,
                },
                "state": {"events": []},
                "account_data": {"events": []},
            }
        since = ctx.since
        joined_at_since = since is not None and await self._was_joined_at(
            ctx, room_id, since.events
        )
        after = since.events if since is not None and joined_at_since else 0
        timeline = await self.rooms.timeline(
            ctx, room_id, after, upto, ctx.filter.timeline_limit, ctx.filter.timeline
        )
        state = await self.rooms.state_events(
            ctx, room_id, timeline, after if joined_at_since else None
        )
        return {
            "timeline": {
                "events": await self.rooms.serialize(ctx, timeline.events, prev_content=True),
                "limited": timeline.limited,
                "prev_batch": timeline.prev_batch(ctx.now),
            },
            "state": {"events": await self.rooms.serialize(ctx, state)},
            "account_data": {"events": []},
        }
