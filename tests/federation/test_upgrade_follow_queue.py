"""Following another server's upgrade, without the network: who is queued in the tombstone's
transaction (joined, not left, not opted out, operator switch), and the worker over the
durable queue (retry with backoff, rate limits, refusal then invite, exactly once with two
workers, resume after a restart). The joins themselves are real local joins through
MembershipService; a wrapper makes the first attempts fail the way a remote server would.
Storage tests: both engines."""

from __future__ import annotations

import asyncio
from typing import Any

from homeserver.app import Homeserver
from homeserver.errors import Forbidden
from homeserver.federation.client import FederationUnreachable
from homeserver.federation.remote_upgrades import RemoteUpgrades
from homeserver.federation.upgrade_follows import (
    OPT_OUT_TYPE,
    UpgradeFollower,
    opted_out,
    select_followers,
    via_servers,
)
from homeserver.ratelimit import RateLimitExceeded
from homeserver.rooms.membership import MembershipService
from homeserver.storage.account_data import GLOBAL
from homeserver.storage.database import Transaction
from homeserver.storage.upgrade_follows import DONE, FAILED, PENDING, QUEUED, SKIPPED
from homeserver.visibility.client import get_membership
from tests.builders import join, leave, make_room
from tests.harness import hs, hs_config, make_user

__all__ = ["hs", "hs_config"]

ME = "test.local"


# --- pure ------------------------------------------------------------------------------------
def test_selection_keeps_our_joined_users_who_did_not_opt_out() -> None:
    joined = ["@a:me", "@b:me", "@c:me", "@x:remote", "@a:me"]
    opt_outs = {"@b:me": {"follow_remote_upgrades": False}, "@c:me": {"other": 1}}
    assert select_followers(joined, "me", opt_outs) == ["@a:me", "@c:me"]


def test_only_an_explicit_false_opts_out() -> None:
    assert opted_out({"follow_remote_upgrades": False})
    for content in (None, {}, {"follow_remote_upgrades": True}, {"follow_remote_upgrades": 0}, []):
        assert not opted_out(content)


def test_via_is_the_tombstone_senders_server_then_the_biggest_then_the_rooms() -> None:
    joined = ["@a:me", "@b:small", "@c:big", "@d:big", "@e:up"]
    assert via_servers("@e:up", joined, "!new:origin", "me") == ["up", "big", "small", "origin"]
    # A v12 room ID names no server.
    assert via_servers("@e:up", ["@a:me"], "!opaqueid", "me") == ["up"]


# --- who is queued, in the tombstone's transaction ----------------------------------------------
async def _old_room_with_members(hs: Homeserver) -> tuple[str, list[str]]:
    """A room with alice (creator), bob, carol (opted out) joined, and dave who left."""
    users = [(await make_user(hs, name)).user_id for name in ("alice", "bob", "carol", "dave")]
    alice, bob, carol, dave = users
    room_id = await make_room(hs, alice)
    for user_id in (bob, carol, dave):
        await join(hs, room_id, user_id)
    await leave(hs, room_id, dave)
    await hs.store.account_data.set_account_data(
        carol, GLOBAL, OPT_OUT_TYPE, {"follow_remote_upgrades": False}
    )
    return room_id, users


async def _tombstone(hs: Homeserver, room_id: str, sender: str, replacement: str) -> Any:
    from homeserver.events.draft import EventDraft

    return await hs.sender.send(
        room_id,
        EventDraft(
            "m.room.tombstone", sender, {"body": "moved", "replacement_room": replacement}, ""
        ),
    )


async def test_tombstone_queues_joined_local_users_who_did_not_opt_out(hs: Homeserver) -> None:
    old, (alice, bob, _carol, _dave) = await _old_room_with_members(hs)
    new = await make_room(hs, alice)
    event = await _tombstone(hs, old, alice, new)
    await hs.remote_upgrades.on_tombstone(old, event)
    follows = await hs.store.upgrade_follows.for_old_room(old)
    assert sorted(f.user_id for f in follows) == sorted([alice, bob])
    assert {(f.new_room_id, f.state) for f in follows} == {(new, QUEUED)}
    # A second tombstone queues nobody again (the room is already tombstoned).
    await hs.remote_upgrades.on_tombstone(old, event)
    assert len(await hs.store.upgrade_follows.for_old_room(old)) == 2


async def test_operator_switch_off_queues_nobody(hs: Homeserver) -> None:
    old, (alice, *_rest) = await _old_room_with_members(hs)
    new = await make_room(hs, alice)
    event = await _tombstone(hs, old, alice, new)
    upgrades = RemoteUpgrades(
        store=hs.store, notifier=hs.notifier, clock=hs.clock, server_name=ME, follow=False
    )
    await upgrades.on_tombstone(old, event)
    room = await hs.store.rooms.get_room(old)
    assert room is not None and room.replacement_room_id == new
    assert await hs.store.upgrade_follows.for_old_room(old) == []


# --- the worker ------------------------------------------------------------------------------
class Clock:
    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class FailingFirst:
    """MembershipService whose first ``join`` calls for a user raise that user's errors."""

    def __init__(
        self, real: MembershipService, errors: dict[str, list[Exception]] | None = None
    ) -> None:
        self.real = real
        self.errors = errors or {}
        self.calls: list[tuple[str, str, list[str]]] = []

    async def join(self, user_id: str, room_id: str, *, servers: Any = ()) -> str:
        self.calls.append((user_id, room_id, list(servers)))
        if self.errors.get(user_id):
            raise self.errors[user_id].pop(0)
        return await self.real.join(user_id, room_id, servers=servers)


def worker(hs: Homeserver, membership: Any, clock: Clock) -> UpgradeFollower:
    return UpgradeFollower(
        store=hs.store,
        membership=membership,
        federation_config=hs.config.federation,
        clock=clock,
        server_name=hs.server_name,
        jitter=lambda: 1.0,
    )


async def _queued(hs: Homeserver, clock: Clock) -> tuple[str, str, list[str]]:
    """Alice and bob queued to follow from an old room into a public new room of ours."""
    alice = (await make_user(hs, "alice")).user_id
    bob = (await make_user(hs, "bob")).user_id
    old = await make_room(hs, alice)
    await join(hs, old, bob)
    new = await make_room(hs, (await make_user(hs, "owner")).user_id, predecessor=old)

    async def queue(txn: Transaction) -> int:
        return await hs.store.upgrade_follows.queue_txn(
            txn, old, new, [alice, bob], ["elsewhere.example"], now=clock()
        )

    assert await hs.store.db.run_in_transaction("queue", queue) == 2
    return old, new, [alice, bob]


async def _joined(hs: Homeserver, room_id: str, user_id: str) -> bool:
    member = await get_membership(hs.store, room_id, user_id)
    return member is not None and member.membership == "join"


async def test_unreachable_is_retried_with_the_federation_backoff(hs: Homeserver) -> None:
    clock = Clock()
    old, new, (alice, bob) = await _queued(hs, clock)
    membership = FailingFirst(
        hs.membership, {alice: [FederationUnreachable("down"), FederationUnreachable("down")]}
    )
    follower = worker(hs, membership, clock)
    # We are in the new room: bob's (local) join does not wait for alice's retry.
    assert await follower.run_once() == 2
    interval = hs.config.federation.destination_min_retry_interval_ms
    follow = await hs.store.upgrade_follows.get(old, alice)
    assert follow is not None
    assert (follow.state, follow.next_attempt_ts, follow.retry_interval_ms) == (
        QUEUED,
        clock.now + interval,
        interval,
    )
    assert (follow.attempts, follow.last_error) == (1, "down")
    assert not await _joined(hs, new, alice)
    assert await _joined(hs, new, bob)
    assert await follower.run_once() == 0  # not due yet
    clock.now += interval
    assert await follower.run_once() == 1
    follow = await hs.store.upgrade_follows.get(old, alice)
    grown = int(interval * hs.config.federation.destination_retry_multiplier)
    assert follow is not None and follow.next_attempt_ts == clock.now + grown  # backed off more
    clock.now += grown
    assert await follower.run_once() == 1
    follow = await hs.store.upgrade_follows.get(old, alice)
    assert follow is not None and follow.state == DONE
    assert await _joined(hs, new, alice)
    assert [c[2] for c in membership.calls] == [["elsewhere.example"]] * 4


async def test_rate_limited_follow_waits_for_the_bucket_not_the_backoff(hs: Homeserver) -> None:
    clock = Clock()
    old, new, (alice, bob) = await _queued(hs, clock)
    follower = worker(hs, FailingFirst(hs.membership, {alice: [RateLimitExceeded(1500)]}), clock)
    await follower.run_once()
    follow = await hs.store.upgrade_follows.get(old, alice)
    assert follow is not None
    assert (follow.state, follow.next_attempt_ts, follow.retry_interval_ms) == (
        QUEUED,
        clock.now + 1500,
        0,
    )
    assert await _joined(hs, new, bob)  # the other user's follow went on
    clock.now += 1500
    await follower.run_once()
    assert await _joined(hs, new, alice)


async def test_refused_is_pending_until_an_invite_arrives(hs: Homeserver) -> None:
    clock = Clock()
    old, new, (alice, _bob) = await _queued(hs, clock)
    follower = worker(hs, FailingFirst(hs.membership, {alice: [Forbidden("not invited")]}), clock)
    await follower.run_once()
    follow = await hs.store.upgrade_follows.get(old, alice)
    assert follow is not None and (follow.state, follow.last_error) == (PENDING, "not invited")
    assert not await _joined(hs, new, alice)
    clock.now += 10 * 24 * 3600 * 1000
    assert await follower.run_once() == 0  # pending rows are not retried on a timer
    await follower.on_invite(alice, new)
    assert await follower.run_once() == 1
    assert await _joined(hs, new, alice)


async def test_a_user_who_opts_out_after_the_tombstone_is_skipped(hs: Homeserver) -> None:
    clock = Clock()
    old, new, (alice, bob) = await _queued(hs, clock)
    await hs.store.account_data.set_account_data(
        alice, GLOBAL, OPT_OUT_TYPE, {"follow_remote_upgrades": False}
    )
    await worker(hs, hs.membership, clock).run_once()
    follow = await hs.store.upgrade_follows.get(old, alice)
    assert follow is not None and follow.state == SKIPPED
    assert not await _joined(hs, new, alice)
    assert await _joined(hs, new, bob)


async def test_a_user_who_left_the_old_room_after_the_tombstone_is_skipped(
    hs: Homeserver,
) -> None:
    clock = Clock()
    old, new, (alice, bob) = await _queued(hs, clock)
    await leave(hs, old, bob)
    await worker(hs, hs.membership, clock).run_once()
    follow = await hs.store.upgrade_follows.get(old, bob)
    assert follow is not None and (follow.state, follow.last_error) == (SKIPPED, "left")
    assert not await _joined(hs, new, bob)
    assert await _joined(hs, new, alice)


async def test_a_room_that_does_not_name_the_old_one_as_predecessor_is_not_joined(
    hs: Homeserver,
) -> None:
    clock = Clock()
    alice = (await make_user(hs, "alice")).user_id
    old = await make_room(hs, alice)
    elsewhere = await make_room(hs, (await make_user(hs, "owner")).user_id)

    async def queue(txn: Transaction) -> int:
        return await hs.store.upgrade_follows.queue_txn(txn, old, elsewhere, [alice], [], now=0)

    await hs.store.db.run_in_transaction("queue", queue)
    await worker(hs, hs.membership, clock).run_once()
    follow = await hs.store.upgrade_follows.get(old, alice)
    assert follow is not None and follow.state == FAILED
    assert follow.last_error is not None and "predecessor" in follow.last_error
    assert await get_membership(hs.store, elsewhere, alice) is None


async def test_two_workers_join_each_user_exactly_once(hs: Homeserver) -> None:
    clock = Clock()
    _old, new, users = await _queued(hs, clock)
    first = FailingFirst(hs.membership)
    second = FailingFirst(hs.membership)
    claimed = await asyncio.gather(
        worker(hs, first, clock).run_once(), worker(hs, second, clock).run_once()
    )
    assert sum(claimed) == 2
    assert sorted(c[0] for c in first.calls + second.calls) == sorted(users)
    for user_id in users:
        assert await _joined(hs, new, user_id)
    joins = [
        e
        for e in await hs.store.state.get_current_members(new, "join")
        if e in users  # one current join each, and no repeats were sent
    ]
    assert sorted(joins) == sorted(users)


async def test_a_dead_workers_claim_is_taken_over_after_its_lease(hs: Homeserver) -> None:
    clock = Clock()
    old, new, (alice, _bob) = await _queued(hs, clock)
    follows = hs.store.upgrade_follows
    held = await follows.get(old, alice)
    assert held is not None
    # A worker claimed alice's row and died before finishing it.
    assert await follows.claim(held, now=clock.now, lease_ms=60_000) is not None
    assert await follows.claim(held, now=clock.now, lease_ms=60_000) is None  # held
    restarted = worker(hs, hs.membership, clock)
    assert await restarted.run_once() == 1  # bob only
    assert not await _joined(hs, new, alice)
    clock.now += 60_000
    assert await restarted.run_once() == 1
    assert await _joined(hs, new, alice)
    follow = await follows.get(old, alice)
    assert follow is not None and follow.state == DONE


async def test_the_worker_started_at_boot_resumes_the_queue(hs: Homeserver) -> None:
    clock = Clock()
    _old, new, users = await _queued(hs, clock)
    follower = worker(hs, hs.membership, clock)
    await follower.start()
    try:
        for _ in range(500):
            if all([await _joined(hs, new, u) for u in users]):
                break
            await asyncio.sleep(0.02)
        assert all([await _joined(hs, new, u) for u in users])
    finally:
        await follower.stop()
