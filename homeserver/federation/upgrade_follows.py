"""Our users follow room upgrades made by other servers (issue 14).

A Synapse upgrade moves nobody: its tombstone reaches us and our joined users would each have
to join the replacement by hand. Instead, the transaction that stores the tombstone
(``remote_upgrades.py``) queues one row per local user joined to the old room at that point
(:func:`select_followers`: not a user who left before, not one who opted out with global
account data ``m.room_upgrades`` ``{"follow_remote_upgrades": false}``), and this worker joins
each of them to the replacement, as the user would: through :class:`MembershipService` (bans,
join rules, restricted allow lists, rc_joins all apply; the server acts for the user, so a
rate-limited follow is retried when the bucket refills rather than dropped).

Order: the rows of one replacement are worked one at a time, so the first join goes through
another server (the inviter's when an invite arrived — accepting it —, else the tombstone's
sender's, then the other servers of the old room) and makes us resident; the others are then
local joins sent as PDUs, made in batches (:meth:`MembershipService.join_local_many`: the same
checks per user, one transaction per batch that also marks their rows ``done``). A room admin of
the old room could name any room as the replacement: the replacement's ``m.room.create`` must
name the old room as its ``predecessor`` (checked before a local join, and right after the first
join through another server, which is left again if it does not) — else ``failed``. A user who
left the old room since the tombstone, or opted out since, is ``skipped``. Outcomes: joined →
``done``; refused (403, or a restricted room nobody can vouch for) → ``pending``, kept visible
as the tombstone in /sync, and queued again when an invite for the user to the replacement
arrives (:meth:`UpgradeFollower.on_invite`); unreachable or 5xx → retried with the federation
sender's backoff policy (``retry.py``), the replacement's other queued rows waiting as long.
Rows are claimed under compare-and-set with a lease (``storage/upgrade_follows.py``), so each is
worked by one worker, and a restart resumes what is queued (and, once the lease ran out, what a
dead worker held).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from homeserver.clock import WallClock
from homeserver.config.federation import FederationConfig
from homeserver.errors import Codes, MatrixError
from homeserver.federation.client import FederationError
from homeserver.federation.retry import Jitter, next_retry_interval, synapse_jitter
from homeserver.metrics import HomeserverMetrics
from homeserver.ratelimit import RateLimitExceeded
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.remote_joins import candidate_servers
from homeserver.rooms.restricted import UNABLE_TO_AUTHORISE_JOIN, UNABLE_TO_GRANT_JOIN
from homeserver.storage import Store
from homeserver.storage.account_data import GLOBAL
from homeserver.storage.database import Transaction
from homeserver.storage.upgrade_follows import DONE, FAILED, PENDING, SKIPPED, Follow
from homeserver.streams.waiting import wait_event
from homeserver.types import domain_of
from homeserver.visibility.client import get_membership

logger = logging.getLogger(__name__)

#: Global account data by which a user opts out of following remote upgrades.
OPT_OUT_TYPE = "m.room_upgrades"
OPT_OUT_KEY = "follow_remote_upgrades"
#: How long a worker holds a claimed row (a join through federation tries several servers).
LEASE_MS = 10 * 60 * 1000
#: The most servers remembered to join through.
MAX_VIA = 10
#: The longest idle wait between looks at the queue (new rows wake the worker at once).
MAX_IDLE_SECONDS = 60.0
#: Rows read per look at the queue.
BATCH = 500
#: Local joins into one replacement made in one transaction (``MembershipService.join_local_many``).
LOCAL_BATCH = 250


class _ClaimLost(Exception):
    """A row of a batch was no longer this worker's when its join was to be committed."""


#: Refusals meaning "not this user, not now": wait for an invite.
_REFUSED_CODES = frozenset({UNABLE_TO_AUTHORISE_JOIN, UNABLE_TO_GRANT_JOIN})


def opted_out(content: Any) -> bool:
    """Whether ``m.room_upgrades`` account data says "do not move me"."""
    return isinstance(content, dict) and content.get(OPT_OUT_KEY) is False


def select_followers(
    joined: Sequence[str], server_name: str, opt_outs: Mapping[str, Any]
) -> list[str]:
    """Our users among the old room's joined members, less those who opted out (each user's
    ``m.room_upgrades`` account data in ``opt_outs``)."""
    return [
        user_id
        for user_id in dict.fromkeys(joined)
        if domain_of(user_id) == server_name and not opted_out(opt_outs.get(user_id))
    ]


def via_servers(
    tombstone_sender: str, joined: Sequence[str], new_room_id: str, server_name: str
) -> list[str]:
    """Servers to join the replacement through: the tombstone's sender's (it made the new
    room), then the old room's other servers by how many members they have, then the
    replacement's own (v1-11 room IDs name one); never ours."""
    counts: dict[str, int] = {}
    for user_id in joined:
        server = domain_of(user_id)
        counts[server] = counts.get(server, 0) + 1
    by_size = sorted(counts, key=lambda s: -counts[s])
    return candidate_servers([domain_of(tombstone_sender), *by_size], new_room_id, server_name)[
        :MAX_VIA
    ]


class UpgradeFollower:
    """The worker: started at boot, woken after each commit that queues follows."""

    def __init__(
        self,
        *,
        store: Store,
        membership: MembershipService,
        federation_config: FederationConfig,
        clock: WallClock,
        server_name: str,
        metrics: HomeserverMetrics | None = None,
        jitter: Jitter = synapse_jitter,
        lease_ms: int = LEASE_MS,
    ) -> None:
        self.store = store
        self.membership = membership
        self.federation_config = federation_config
        self.clock = clock
        self.server_name = server_name
        self.metrics = metrics
        self.jitter = jitter
        self.lease_ms = lease_ms
        self._task: asyncio.Task[None] | None = None
        self._woken = asyncio.Event()

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Work what is queued (after a restart too) and listen for new rows."""
        if self._task is not None:
            return
        self.store.upgrade_follows.add_listener(self.wake)
        self._task = asyncio.create_task(self._loop(), name="upgrade follows")

    async def stop(self) -> None:
        self.store.upgrade_follows.remove_listener(self.wake)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def wake(self) -> None:
        self._woken.set()

    async def on_invite(self, user_id: str, room_id: str) -> None:
        """An invite for our user arrived: a follow into that room refused earlier is due."""
        if await self.store.upgrade_follows.requeue_pending(user_id, room_id, now=self.clock()):
            logger.info("invite of %s to %s: following the upgrade again", user_id, room_id)

    async def _loop(self) -> None:
        while True:
            self._woken.clear()
            try:
                worked = await self.run_once()
                next_due = None if worked else await self.store.upgrade_follows.next_due_ts()
            except Exception:
                logger.exception("upgrade follows: looking at the queue failed")
                worked, next_due = 0, self.clock() + 5000
            if worked:
                continue
            wait = MAX_IDLE_SECONDS
            if next_due is not None:
                wait = min(max((next_due - self.clock()) / 1000, 0.1), MAX_IDLE_SECONDS)
            await wait_event(self._woken, wait)

    # --- one look at the queue ----------------------------------------------------------------
    async def run_once(self) -> int:
        """Work every row due now, one replacement room at a time; returns how many rows this
        worker claimed."""
        rows = await self.store.upgrade_follows.due(self.clock(), BATCH)
        by_room: dict[str, list[Follow]] = {}
        for follow in rows:
            by_room.setdefault(follow.new_room_id, []).append(follow)
        return sum([await self._room(group) for group in by_room.values()])

    async def _room(self, group: list[Follow]) -> int:
        """One replacement's due rows: one at a time until we are in the room (the first join
        goes through another server), then the local joins a few at once."""
        claimed = 0
        rest = list(group)
        room_id = group[0].new_room_id
        while rest and not await self.store.state.is_host_joined(room_id, self.server_name):
            follow = rest.pop(0)
            token = await self._claim(follow)
            if token is None:
                continue  # another worker has it
            claimed += 1
            if not await self._work(follow, token):
                return claimed  # its join could not get through: the rest wait with it
        for start in range(0, len(rest), LOCAL_BATCH):
            claimed += await self._local_batch(rest[start : start + LOCAL_BATCH])
        return claimed

    async def _local_batch(self, group: list[Follow]) -> int:
        """Rows of one replacement we are in, joined together: claimed in one transaction, and
        every user the membership gate admits joined in one more, which also marks their rows
        ``done`` (a crash leaves both or neither). Who is refused, and the rare user only a
        single join can decide, get the same outcomes as :meth:`_work`."""
        follows = self.store.upgrade_follows
        tokens = await follows.claim_many(group, now=self.clock(), lease_ms=self.lease_ms)
        claimed = [
            (f, tokens[(f.old_room_id, f.user_id)])
            for f in group
            if (f.old_room_id, f.user_id) in tokens
        ]
        if not claimed:
            return 0
        room_id = claimed[0][0].new_room_id
        opt_outs = await self._opt_outs([f.user_id for f, _ in claimed])
        old_members: dict[str, dict[str, str]] = {}
        successor: dict[str, bool] = {}
        ready: list[tuple[Follow, str]] = []
        for follow, token in claimed:
            old = follow.old_room_id
            if old not in old_members:
                old_members[old] = await self._memberships(
                    old, [f.user_id for f, _ in claimed if f.old_room_id == old]
                )
                successor[old] = await self._succeeds(follow)
            if opted_out(opt_outs.get(follow.user_id)):
                await follows.finish(follow, token, SKIPPED, now=self.clock(), error="opted out")
                self._outcome(follow, "skipped", "the user opted out")
            elif old_members[old].get(follow.user_id) != "join":
                await follows.finish(follow, token, SKIPPED, now=self.clock(), error="left")
                self._outcome(follow, "skipped", "the user left the old room")
            elif not successor[old]:
                await self._not_a_successor(follow, token, leave=False)
            else:
                ready.append((follow, token))
        if not ready:
            return len(claimed)
        by_user: dict[str, list[tuple[Follow, str]]] = {}
        for follow, token in ready:
            by_user.setdefault(follow.user_id, []).append((follow, token))

        # claim_many gave every row of the batch the same token.
        token = ready[0][1]

        async def mark_done(txn: Transaction, joined: list[str]) -> None:
            rows = [follow for user_id in joined for follow, _ in by_user[user_id]]
            if await follows.finish_many_txn(txn, rows, token, DONE, now=self.clock()) != len(rows):
                raise _ClaimLost  # another worker holds a row now: undo the whole batch

        try:
            result = await self.membership.join_local_many(room_id, list(by_user), in_txn=mark_done)
        except Exception as e:
            if not isinstance(e, _ClaimLost):
                logger.exception("joining %d users to %s at once failed", len(by_user), room_id)
            # One at a time instead, as before the batch (each still under its claim).
            for follow, token in ready:
                await self._work(follow, token)
            return len(claimed)
        for user_id in result.joined:
            for follow, _token in by_user[user_id]:
                self._outcome(follow, "joined", "locally")
        for user_id, error in result.refused.items():
            for follow, token in by_user[user_id]:
                await self._join_failed(follow, token, error, resident=True)
        for user_id in result.one_by_one:
            for follow, token in by_user[user_id]:
                await self._work(follow, token)
        return len(claimed)

    async def _opt_outs(self, users: list[str]) -> dict[str, Any]:
        follows = self.store.upgrade_follows

        async def read(txn: Transaction) -> dict[str, Any]:
            return await follows.account_data_of_txn(txn, users, OPT_OUT_TYPE)

        return await self.store.db.run_in_transaction("read_follow_opt_outs", read)

    async def _memberships(self, room_id: str, users: list[str]) -> dict[str, str]:
        """The current membership of each of ``users`` in ``room_id`` that has one."""
        state = await self.store.state.get_current_state_ids(room_id)
        ids = {u: state[("m.room.member", u)] for u in users if ("m.room.member", u) in state}
        events = await self.store.events.get_events(ids.values())
        return {
            u: e.membership
            for u, eid in ids.items()
            if (e := events.get(eid)) is not None and e.membership
        }

    async def _claim(self, follow: Follow) -> str | None:
        return await self.store.upgrade_follows.claim(
            follow, now=self.clock(), lease_ms=self.lease_ms
        )

    async def _work(self, follow: Follow, token: str) -> bool:
        """One claimed row; False when the replacement's other rows should wait too."""
        follows = self.store.upgrade_follows
        user_id, room_id = follow.user_id, follow.new_room_id
        content = await self.store.account_data.get_account_data(user_id, GLOBAL, OPT_OUT_TYPE)
        if opted_out(content):
            await follows.finish(follow, token, SKIPPED, now=self.clock(), error="opted out")
            self._outcome(follow, "skipped", "the user opted out")
            return True
        left = await get_membership(self.store, follow.old_room_id, user_id)
        if left is None or left.membership != "join":
            # They left the old room since the tombstone: they chose where to be.
            await follows.finish(follow, token, SKIPPED, now=self.clock(), error="left")
            self._outcome(follow, "skipped", "the user left the old room")
            return True
        resident = await self.store.state.is_host_joined(room_id, self.server_name)
        if resident and not await self._succeeds(follow):
            return await self._not_a_successor(follow, token, leave=False)
        try:
            await self.membership.join(user_id, room_id, servers=await self._servers(follow))
        except (MatrixError, FederationError, OSError, TimeoutError) as e:
            return await self._join_failed(follow, token, e, resident=resident)
        except Exception as e:
            logger.exception("following %s into %s failed", user_id, room_id)
            return await self._retry(follow, token, type(e).__name__, resident=resident)
        member = await get_membership(self.store, room_id, user_id)
        if member is None or member.membership != "join":
            return await self._retry(
                follow, token, "the join did not become the room's state", resident=resident
            )
        if not resident and not await self._succeeds(follow):
            # Only now could we read the room's create event: do not stay in a room that
            # merely calls itself the replacement.
            return await self._not_a_successor(follow, token, leave=True)
        await follows.finish(follow, token, DONE, now=self.clock())
        how = "locally" if resident else "through federation"
        self._outcome(follow, "joined", how)
        return True

    async def _join_failed(
        self, follow: Follow, token: str, e: Exception, *, resident: bool
    ) -> bool:
        """The outcome of a join that raised ``e``: rate limited → later; refused → pending;
        unreachable → the federation backoff; otherwise failed."""
        follows = self.store.upgrade_follows
        if isinstance(e, RateLimitExceeded):
            # The server acts for the user: a full rc_joins bucket delays the follow only.
            await follows.retry_later(
                follow,
                token,
                now=self.clock(),
                next_attempt_ts=self.clock() + max(e.retry_after_ms, 100),
                retry_interval_ms=follow.retry_interval_ms,
                error="rate limited",
            )
            self._outcome(follow, "rate_limited", f"retry in {e.retry_after_ms} ms")
            return True
        if isinstance(e, MatrixError):
            if e.errcode == Codes.INCOMPATIBLE_ROOM_VERSION:
                await follows.finish(follow, token, FAILED, now=self.clock(), error=e.message)
                self._outcome(follow, "failed", e.message)
                return True
            if e.status == 403 or e.errcode in _REFUSED_CODES:
                return await self._refused(follow, token, e.message)
            if e.status == 429 or e.status >= 500 or e.status == 404:
                return await self._retry(follow, token, e.message, resident=resident)
            await follows.finish(follow, token, FAILED, now=self.clock(), error=e.message)
            self._outcome(follow, "failed", e.message)
            return True
        return await self._retry(follow, token, str(e) or type(e).__name__, resident=resident)

    async def _succeeds(self, follow: Follow) -> bool:
        """Whether the replacement's create event names the old room as its predecessor."""
        create = await self.store.state.get_current_state_event(follow.new_room_id, "m.room.create")
        predecessor = None if create is None else create.content.get("predecessor")
        return isinstance(predecessor, dict) and predecessor.get("room_id") == follow.old_room_id

    async def _not_a_successor(self, follow: Follow, token: str, *, leave: bool) -> bool:
        error = "the replacement room does not name the old room as its predecessor"
        if leave:
            try:
                await self.membership.leave(follow.user_id, follow.new_room_id)
            except MatrixError as e:
                logger.warning(
                    "could not leave %s again for %s: %s", follow.new_room_id, follow.user_id, e
                )
        await self.store.upgrade_follows.finish(
            follow, token, FAILED, now=self.clock(), error=error
        )
        self._outcome(follow, "failed", error)
        return True

    async def _servers(self, follow: Follow) -> list[str]:
        """The inviter's server first when the user was invited (accepting the invite), then
        the servers remembered from the old room."""
        invite = await self._invite_server(follow)
        return list(dict.fromkeys([*([invite] if invite else []), *follow.via]))

    async def _invite_server(self, follow: Follow) -> str | None:
        row = await self.store.out_of_band.get(follow.user_id, follow.new_room_id)
        if row is None or row.membership != "invite":
            return None
        event = await self.store.events.get_event(row.event_id)
        return None if event is None else domain_of(event.sender)

    async def _refused(self, follow: Follow, token: str, error: str) -> bool:
        if await self._invite_server(follow) is not None and follow.attempts < 3:
            # An invite arrived while this attempt ran: use it now rather than wait for one.
            return await self._retry(follow, token, error, resident=True, now_again=True)
        await self.store.upgrade_follows.finish(
            follow, token, PENDING, now=self.clock(), error=error
        )
        self._outcome(follow, "pending", f"refused ({error}); waiting for an invite")
        return True

    async def _retry(
        self, follow: Follow, token: str, error: str, *, resident: bool, now_again: bool = False
    ) -> bool:
        now = self.clock()
        interval = (
            0
            if now_again
            else next_retry_interval(follow.retry_interval_ms, self.federation_config, self.jitter)
        )
        await self.store.upgrade_follows.retry_later(
            follow,
            token,
            now=now,
            next_attempt_ts=now + interval,
            retry_interval_ms=interval,
            error=error,
            # Not in the room yet: the others would fail through the same servers.
            whole_room=not resident,
        )
        self._outcome(follow, "retry", f"{error}; again in {interval} ms")
        return resident

    def _outcome(self, follow: Follow, outcome: str, detail: str) -> None:
        logger.info(
            "following the upgrade of %s: %s into %s: %s (%s)",
            follow.old_room_id,
            follow.user_id,
            follow.new_room_id,
            outcome,
            detail,
        )
        if self.metrics is not None:
            self.metrics.remote_upgrade_follow(outcome)
