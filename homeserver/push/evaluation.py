"""Push-rule evaluation for every event, after it commits (the durable background step).

Why after commit and not in the event's transaction: a message in a room of a thousand local
members means a thousand rulesets evaluated and as many rows written, and doing that while the
room's row lock (and the server-wide stream-ordering lock) is held would slow every sender on the
server. Instead one step walks the events stream behind the writers: it reads a batch of events
past its position, evaluates them outside any transaction, then writes their actions, the pusher
jobs they cause and its new position in ONE transaction, moving the position by compare-and-set.
So every event is evaluated exactly once, whatever crashes or how many processes run it, and a
restart resumes where the position says. Stream orderings are taken in commit order (a
server-wide lock), so nothing committed is ever left behind the position.

/sync reads the position as its ``push`` token part, and a room whose notifications were found
after a client's token is sent again with its new counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from homeserver.clock import WallClock
from homeserver.events.event import Event
from homeserver.push.evaluator import (
    context_for,
    evaluate,
    is_highlight,
    notifies,
    shared_default_verdict,
)
from homeserver.push.room_members import MembersAt, MembersAtGroups
from homeserver.push.rules import PushRulesService
from homeserver.storage import Store
from homeserver.storage.push_actions import MAIN_THREAD, PushAction
from homeserver.storage.pushers import PushJob
from homeserver.streams.notifier import Notifier
from homeserver.streams.waiting import wait_event

logger = logging.getLogger(__name__)

BATCH = 100
#: Only pushers of this kind send anything ("email" is Synapse's other kind, not offered).
HTTP_PUSHER = "http"


class _LostRace(Exception):
    """Another process evaluated these events first."""


def thread_of(event: Event) -> str:
    """The thread an event is in: the root of an ``m.thread`` relation, else the main one."""
    relates = event.content.get("m.relates_to")
    if isinstance(relates, dict) and relates.get("rel_type") == "m.thread":
        root = relates.get("event_id")
        if isinstance(root, str):
            return root
    return MAIN_THREAD


def _matchable(event: Event) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": event.type,
        "content": event.content,
        "sender": event.sender,
        "room_id": event.room_id,
    }
    if event.state_key is not None:
        body["state_key"] = event.state_key
    return body


#: Up to this many users with rules of their own on the server, a batch reads them all once
#: and intersects; past it, it asks about each room's members (once per user and batch).
RULE_USERS_READ_WHOLE = 10_000


@dataclass(slots=True)
class _Batch:
    """What one batch of events shares: their state groups, read at once, and who has rules
    of their own (read once per batch, not once per event)."""

    groups: dict[str, tuple[int, int]]
    #: every user with rules of their own, or None past RULE_USERS_READ_WHOLE.
    rule_users: set[str] | None = None
    read_rule_users: bool = False
    has_rules: dict[str, bool] = field(default_factory=dict)

    async def local_users_with_rules(self, store: Store, users: Collection[str]) -> set[str]:
        """Those of ``users`` with rules of their own (a new set)."""
        if not self.read_rule_users:
            found = await store.push_rules.users_with_any_rules(RULE_USERS_READ_WHOLE + 1)
            self.rule_users = found if len(found) <= RULE_USERS_READ_WHOLE else None
            self.read_rule_users = True
        everyone = self.rule_users
        if everyone is not None:
            if len(everyone) < len(users):
                return {u for u in everyone if u in users}
            return {u for u in users if u in everyone}
        unknown = [u for u in users if u not in self.has_rules]
        if unknown:
            found = await store.push_rules.users_with_rules(unknown)
            for user_id in unknown:
                self.has_rules[user_id] = user_id in found
        return {u for u in users if self.has_rules[u]}


@dataclass(frozen=True, slots=True)
class Evaluated:
    actions: list[PushAction]
    jobs: list[PushJob]


class PushEvaluator:
    def __init__(
        self,
        store: Store,
        push_rules: PushRulesService,
        notifier: Notifier,
        clock: WallClock,
        server_name: str,
        *,
        on_jobs: Callable[[Iterable[int]], None] | None = None,
        poll_interval_s: float | None = None,
    ) -> None:
        self.store = store
        #: with several processes, events committed by the others reach this one's notifier
        #: only through a cross-process wake-up: also look at the stream this often.
        self.poll_interval_s = poll_interval_s
        self.push_rules = push_rules
        self.notifier = notifier
        self.clock = clock
        self.server_name = server_name
        self.on_jobs = on_jobs
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._members = MembersAtGroups(store, server_name)

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is not None:
            return
        self.notifier.add_listener(self._on_notified)
        self._wake.set()  # catch up on what committed while we were down
        self._task = asyncio.create_task(self._run(), name="push-evaluator")

    async def stop(self) -> None:
        self.notifier.remove_listener(self._on_notified)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on_notified(self, room_ids: Iterable[str]) -> None:
        if any(True for _ in room_ids):
            self._wake.set()

    async def _run(self) -> None:
        while True:
            await wait_event(self._wake, self.poll_interval_s)
            self._wake.clear()
            try:
                await self.process_pending()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A database outage or a bug: the position did not move; try at the next wake.
                logger.exception("push rule evaluation failed")
                await asyncio.sleep(1)
                self._wake.set()

    # --- the work -------------------------------------------------------------------------
    async def process_pending(self) -> int:
        """Evaluate every committed event past the position; returns how many were."""
        done = 0
        while True:
            position = await self.store.push_actions.get_evaluated_position()
            upto = await self.store.events.get_max_stream_ordering()
            if upto <= position:
                return done
            ids = await self.store.push_actions.get_evaluable_event_ids(position, upto, BATCH)
            events = await self.store.events.get_events(ids)
            ordered = [events[i] for i in ids if i in events]
            if len(ids) == BATCH and ordered:
                upto = ordered[-1].internal.stream_ordering or upto
            evaluated = Evaluated([], [])
            batch = _Batch(await self.store.state.get_state_groups_around(ids))
            for event in ordered:
                if not event.internal.soft_failed:
                    await self._evaluate_event(event, evaluated, batch)
            try:
                await self.store.db.run_in_transaction(
                    "push_actions", self._commit, position, upto, evaluated, shared_commit=True
                )
            except _LostRace:
                continue
            done += len(ordered)
            users = {a.user_id for a in evaluated.actions}
            if users:
                self.notifier.notify(user_ids=users)
            if evaluated.jobs and self.on_jobs is not None:
                self.on_jobs({j.pusher_id for j in evaluated.jobs})

    async def _commit(self, txn: Any, position: int, upto: int, evaluated: Evaluated) -> None:
        if not await self.store.push_actions.advance_evaluated_txn(txn, position, upto):
            raise _LostRace()
        await self.store.push_actions.insert_actions_txn(txn, evaluated.actions)
        await self.store.pushers.enqueue_txn(txn, evaluated.jobs)

    async def _sender_power(self, event: Event, levels: Event | None) -> tuple[int, dict[str, Any]]:
        """The sender's power level and the ``notifications`` levels, before the event."""
        if levels is None:
            create = await self.store.state.get_current_state_event(event.room_id, "m.room.create")
            return (100 if create is not None and create.sender == event.sender else 0), {}
        content = levels.content
        users = content.get("users") if isinstance(content.get("users"), dict) else {}
        level = users.get(event.sender, content.get("users_default", 0))
        notifications = content.get("notifications")
        return (
            level if isinstance(level, int) else 0,
            notifications if isinstance(notifications, dict) else {},
        )

    async def _evaluate_event(self, event: Event, out: Evaluated, batch: _Batch) -> None:
        groups = batch.groups.get(event.event_id)
        if groups is None:  # an outlier: this server does not know the state
            await self._evaluate_for(event, MembersAt(), out, batch)
            return
        before, after = groups
        members = await self._members.take(before)
        done = False
        try:
            await self._evaluate_for(event, members, out, batch)
            done = True
        finally:
            self._members.give_back(event, before, after if done else before, members)

    async def _evaluate_for(
        self, event: Event, members: MembersAt, out: Evaluated, batch: _Batch
    ) -> None:
        """Evaluate ``event`` for the local users joined in the state before it (so someone
        who joined later is never told of it), and the invitee of an invite, less the sender.
        ``members`` is that state."""
        local = members.local
        sender = event.sender
        invitee = None
        if (
            event.type == "m.room.member"
            and event.content.get("membership") == "invite"
            and isinstance(event.state_key, str)
            and event.state_key.endswith(":" + self.server_name)
            and event.state_key not in local
        ):
            invitee = event.state_key
        count = len(local) - (sender in local) + (invitee is not None)
        if not count:
            return
        levels = (
            None
            if members.levels_id is None
            else await self.store.events.get_event(members.levels_id)
        )
        power, notification_levels = await self._sender_power(event, levels)
        ctx = context_for(
            _matchable(event),
            room_member_count=len(members.joined),
            sender_power_level=power,
            notification_levels=notification_levels,
        )
        memo: dict[str, bool] = {}
        # Members with the server's default rules (most of a big room) often all get the same
        # verdict: judged once (``shared_default_verdict``, on any of them: the defaults differ
        # only where they name their user); when it is silent only the members with rules of
        # their own are evaluated, and nobody else is even listed (a join into a room of
        # 10,000 costs what its few members with rules of their own cost).
        own = await batch.local_users_with_rules(self.store, local)
        own.discard(sender)
        if invitee is not None and await batch.local_users_with_rules(self.store, {invitee}):
            own.add(invitee)
        shared: tuple[bool, list[Any] | None] | None = None
        if count > len(own):
            first_default = (
                invitee
                if invitee is not None and invitee not in own
                else next(u for u in local if u != sender and u not in own)
            )
            defaults, _ = await self.push_rules.get_rulesets([first_default], own=set())
            shared = shared_default_verdict(defaults[first_default], ctx, memo)
        if shared is not None and shared[0] and not notifies(shared[1]):
            recipients = sorted(own)
        else:
            recipients = [u for u in local if u != sender]
            if invitee is not None:
                recipients.append(invitee)
        rulesets, own = await self.push_rules.get_rulesets(recipients, own=own)
        thread = thread_of(event)
        ordering = event.internal.stream_ordering or 0
        now = self.clock()
        notified: list[tuple[str, list[Any]]] = []
        for user_id in recipients:
            ruleset = rulesets[user_id]
            if user_id not in own:
                assert shared is not None
                if shared[0]:
                    if not notifies(shared[1]):
                        continue
                    actions = list(shared[1] or ())
                else:
                    actions = evaluate(ruleset, ctx, None, memo)
            else:
                reads_names = _reads_names(ruleset)
                name = await self._display_name(event.room_id, user_id) if reads_names else None
                actions = evaluate(ruleset, ctx, name, memo)
            if notifies(actions):
                assert actions is not None
                notified.append((user_id, actions))
                out.actions.append(
                    PushAction(
                        event.event_id,
                        event.room_id,
                        user_id,
                        thread,
                        ordering,
                        is_highlight(actions),
                        actions,
                        now,
                    )
                )
        if not notified:
            return
        pushers = await self.store.pushers.get_pushers_of_users([u for u, _ in notified])
        for user_id, actions in notified:
            for pusher in pushers.get(user_id, []):
                if pusher.kind == HTTP_PUSHER:
                    out.jobs.append(
                        PushJob(0, pusher.id, user_id, event.event_id, event.room_id, actions, now)
                    )

    async def _display_name(self, room_id: str, user_id: str) -> str | None:
        """The user's display name in the room (read only for rulesets that use it: the
        default rules never do, ``contains_display_name`` is for a user's own rules)."""
        member = await self.store.state.get_current_state_event(room_id, "m.room.member", user_id)
        name = None if member is None else member.content.get("displayname")
        return name if isinstance(name, str) else None


def _reads_names(ruleset: dict[str, list[Any]]) -> bool:
    return any(
        isinstance(c, dict) and c.get("kind") == "contains_display_name"
        for rules in ruleset.values()
        for rule in rules
        if rule.get("enabled", True)
        for c in rule.get("conditions") or ()
    )
