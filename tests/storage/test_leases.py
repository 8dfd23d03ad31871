"""Leases (storage/leases.py, streams/leases.py) on both engines: acquire, renew, expiry,
takeover, release; the keeper's view of what it holds (lost to another process, or run out
locally without a renewal); the live instances; a singleton job moving to the other process
when its holder stops renewing or stops; on PostgreSQL, a killed holder's leases taken over at
once. Times come from a hand-moved clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from homeserver.storage import Store
from homeserver.streams.leases import LeaseKeeper, SingletonJob
from tests.conftest import OpenTestDatabase

TIMEOUT_MS = 10_000


class Clock:
    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass(frozen=True)
class Step:
    """One compare-and-set against the lease "job": who tries, at which time, and whether it
    must succeed."""

    holder: str
    token: str
    at: int
    expect: bool


# Each scenario starts with "a" taking the lease at t=0 under token "t1" (until 10 000).
ACQUIRE_SCENARIOS = {
    "held: another holder is refused": [Step("b", "u1", 5_000, False)],
    "at the expiry instant it still holds": [Step("b", "u1", TIMEOUT_MS, False)],
    "expired: another holder takes it": [Step("b", "u1", TIMEOUT_MS + 1, True)],
    "same holder, same token: not a second acquisition": [Step("a", "t1", 5_000, False)],
    "same holder, new token (its restart) takes it at once": [Step("a", "t2", 5_000, True)],
    "taken over, then the old holder is refused": [
        Step("b", "u1", TIMEOUT_MS + 1, True),
        Step("c", "v1", TIMEOUT_MS + 2, False),
    ],
}


async def test_acquire_is_a_compare_and_set(store: Store) -> None:
    """Table-driven; one database for every scenario (each on a lease of its own)."""
    leases = store.leases
    for name, steps in ACQUIRE_SCENARIOS.items():
        assert await leases.try_acquire(name, "a", "t1", now=0, timeout_ms=TIMEOUT_MS)
        holder = "a"
        for step in steps:
            got = await leases.try_acquire(
                name, step.holder, step.token, now=step.at, timeout_ms=TIMEOUT_MS
            )
            assert got is step.expect, (name, step)
            if got:
                holder = step.holder
        row = await leases.get(name)
        assert row is not None and row.holder == holder, name
    assert await leases.release_all("a") == 4 and await leases.release_all("b") == 2

    # Renewal keeps only the leases still held under their tokens.
    assert await leases.try_acquire("one", "a", "t1", now=0, timeout_ms=TIMEOUT_MS)
    assert await leases.try_acquire("two", "a", "t2", now=0, timeout_ms=TIMEOUT_MS)
    # "two" expires and "b" takes it; "one" expired too but nobody took it: still a's.
    assert await leases.try_acquire("two", "b", "u2", now=TIMEOUT_MS + 1, timeout_ms=TIMEOUT_MS)
    kept = await leases.renew(
        "a", {"one": "t1", "two": "t2"}, now=TIMEOUT_MS + 2, timeout_ms=TIMEOUT_MS
    )
    assert kept == {"one"}
    one, two = await leases.get("one"), await leases.get("two")
    assert one is not None and one.expires_ts == 2 * TIMEOUT_MS + 2
    assert two is not None and (two.holder, two.expires_ts) == ("b", 2 * TIMEOUT_MS + 1)
    # Releasing under a stale token does nothing; under the right one it frees the lease.
    assert not await leases.release("two", "t2")
    assert await leases.release("two", "u2")
    assert await leases.get("two") is None
    assert await leases.release_all("a") == 1


async def test_keeper_notices_loss_and_local_expiry(store: Store) -> None:
    clock = Clock()
    a = LeaseKeeper(store, "a", clock, timeout_ms=TIMEOUT_MS)
    b = LeaseKeeper(store, "b", clock, timeout_ms=TIMEOUT_MS)
    assert await a.try_acquire("federation:x")
    assert not await b.try_acquire("federation:x")
    assert a.holds("federation:x") and not b.holds("federation:x")
    # Renewed, a keeps it past the first timeout.
    clock.now += TIMEOUT_MS // 2
    renewed_at = clock.now
    await a.renew_now()
    clock.now += TIMEOUT_MS // 2 + 1
    assert a.holds("federation:x")
    assert not await b.try_acquire("federation:x")
    # Not renewed again, a stops believing it holds it before it expires for the others.
    clock.now = renewed_at + TIMEOUT_MS - a.margin_ms
    assert not a.holds("federation:x")
    assert not await b.try_acquire("federation:x")
    clock.now = renewed_at + TIMEOUT_MS + 1
    assert await b.try_acquire("federation:x")
    # a's next round learns the lease is gone for good.
    await a.renew_now()
    assert a.held_names() == [] and b.held_names() == ["federation:x"]
    await b.release("federation:x")

    # The live instances follow the heartbeats of the rounds.
    await a.renew_now()
    await b.renew_now()
    assert await a.refresh_live_instances() == ["a", "b"]
    clock.now += TIMEOUT_MS + 1
    await a.renew_now()  # b stopped beating
    assert a.live_instances() == ["a"]
    await b.renew_now()
    assert await a.refresh_live_instances() == ["a", "b"]
    # A clean stop leaves the list and gives every lease up at once.
    assert await b.try_acquire("job")
    await b.stop()
    assert await a.refresh_live_instances() == ["a"]
    assert await a.try_acquire("job")

    # The real loop: a short timeout, renewed by the keeper's own task.
    keeper = LeaseKeeper(store, "c", clock, timeout_ms=300, renew_interval_s=0.02)
    await keeper.start()
    try:
        assert await keeper.try_acquire("loop")
        for _ in range(5):
            clock.now += 200  # more than the timeout in all, less between two rounds
            for _ in range(500):  # until the keeper's own task has renewed at this time
                row = await store.leases.get("loop")
                if row is not None and row.expires_ts == clock.now + 300:
                    break
                await asyncio.sleep(0.01)
            assert keeper.holds("loop")
    finally:
        await keeper.stop()
    assert await store.leases.get("loop") is None


async def test_singleton_job_runs_once_and_moves_when_its_holder_stops(store: Store) -> None:
    clock = Clock()
    keepers = {n: LeaseKeeper(store, n, clock, timeout_ms=TIMEOUT_MS) for n in ("a", "b")}
    running: dict[str, bool] = {"a": False, "b": False}
    rounds: list[str] = []

    def job(name: str) -> SingletonJob:
        async def start() -> None:
            running[name] = True

        async def stop() -> None:
            running[name] = False

        async def every_round() -> None:
            rounds.append(name)

        return SingletonJob(keepers[name], "sweep", start, stop, every_round=every_round)

    jobs = {n: job(n) for n in ("a", "b")}
    await jobs["a"].enable()
    await jobs["b"].enable()
    assert running == {"a": True, "b": False} and rounds == ["a"]
    for _ in range(3):  # both keep renewing: it stays on a, and only a sweeps
        clock.now += TIMEOUT_MS // 3
        await keepers["a"].renew_now()
        await keepers["b"].renew_now()
    assert running == {"a": True, "b": False} and set(rounds) == {"a"}
    # a stops renewing (a frozen or dead process): b takes the job once the lease expired,
    # and a, when it runs a round again, stops its copy.
    clock.now += TIMEOUT_MS + 1
    await keepers["b"].renew_now()
    assert running == {"a": True, "b": True}  # a has not noticed yet: its round is due
    assert not keepers["a"].holds("sweep")
    await keepers["a"].renew_now()
    assert running == {"a": False, "b": True}
    # b stops cleanly: a takes it at its next round, not after a timeout.
    await jobs["b"].disable()
    await keepers["a"].renew_now()
    assert running == {"a": True, "b": False}


# Each scenario: "a" holds the lease under "t1"; "c" tries to take it from (holder, token).
TAKE_OVER_SCENARIOS = {
    "from its holder under its token": ("a", "t1", True),
    "under a stale token (a took it again since)": ("a", "t0", False),
    "from someone who does not hold it": ("b", "t1", False),
}


async def test_take_over_is_a_compare_and_set(store: Store) -> None:
    """Taking a lease from a holder known dead, before it expires: only from that holder under
    the token seen, so two processes finding it dead cannot both take it."""
    leases = store.leases
    for name, (holder, token, expect) in TAKE_OVER_SCENARIOS.items():
        assert await leases.try_acquire(name, "a", "t1", now=0, timeout_ms=TIMEOUT_MS)
        got = await leases.take_over(
            name,
            from_holder=holder,
            from_token=token,
            holder="c",
            token="u1",
            now=5_000,
            timeout_ms=TIMEOUT_MS,
        )
        assert got is expect, name
        row = await leases.get(name)
        assert row is not None
        assert (row.holder, row.token) == (("c", "u1") if expect else ("a", "t1")), name
        if expect:
            assert row.expires_ts == 5_000 + TIMEOUT_MS
            # A second taker that saw the same dead holder loses.
            assert not await leases.take_over(
                name,
                from_holder="a",
                from_token="t1",
                holder="d",
                token="w1",
                now=5_001,
                timeout_ms=TIMEOUT_MS,
            )


async def test_a_killed_holders_leases_are_taken_over_at_once(
    db_engine: str, open_test_database: OpenTestDatabase
) -> None:
    """Two processes, each with its own connections: when "a" dies (its connections close, so
    its liveness lock is free), "b" drops it from the live instances and takes its lease at
    once on PostgreSQL, instead of after the timeout (a dead federation sender's destinations
    would otherwise queue a timeout's worth of PDUs, then flood the peer with them). A holder
    that is alive keeps its lease. SQLite cannot tell (one process): expiry only."""
    clock = Clock()
    first = Store(await open_test_database())
    second = Store(await open_test_database(migrate=False))
    a = LeaseKeeper(first, "a", clock, timeout_ms=TIMEOUT_MS)
    b = LeaseKeeper(second, "b", clock, timeout_ms=TIMEOUT_MS)
    await a.renew_now()  # a announces itself (heartbeat, liveness lock)
    await b.renew_now()
    assert await a.try_acquire("federation:x")
    assert not await b.try_acquire("federation:x")  # alive: not taken from it
    assert await b.refresh_live_instances() == ["a", "b"]

    await first.db.close()  # a is killed: its connections are gone
    clock.now += 1_000  # well within the lease
    if db_engine == "postgres":
        assert await b.refresh_live_instances() == ["b"]
        assert await b.try_acquire("federation:x")
        row = await second.leases.get("federation:x")
        assert row is not None and (row.holder, row.expires_ts) == ("b", clock.now + TIMEOUT_MS)
    else:
        assert await b.refresh_live_instances() == ["a", "b"]
        assert not await b.try_acquire("federation:x")
        clock.now += TIMEOUT_MS
        assert await b.try_acquire("federation:x")
    assert b.holds("federation:x")
