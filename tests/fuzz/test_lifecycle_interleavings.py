"""The room lifecycle under random interleavings (issue 6, item 5; DESIGN.md §3.2).

* :class:`PureLifecycle` drives ``homeserver/rooms/lifecycle.py`` with random (target, actor)
  requests against a reference table written out here from DESIGN.md: every allowed move is
  taken, every other one is refused, ``tombstoned`` is terminal.
* The store machine races the real writers of the ``rooms`` row — the upgrade lock
  (``UpgradeLocks.acquire``/``release``/``recover_if_expired``/``recover_own``), an upgrade's
  commit (lease checked under the row lock, then ``upgrading → tombstoned``), a client's
  tombstone and a tombstone received over federation (``RemoteUpgrades.on_tombstone``) — as
  concurrent asyncio tasks on one room, on SQLite and PostgreSQL, with a clock that can jump
  past the lease. After every round the ``room_lifecycle_transitions`` history must be a legal
  chain ending in the row's status, every operation that reported success must have written
  exactly its transition, and no two upgraders may have held the lock at once: a release or a
  commit only ever ends the lock that its own lease took.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from homeserver.federation.remote_upgrades import RemoteUpgrades
from homeserver.rooms.lifecycle import (
    INITIAL_STATUS,
    TERMINAL_STATUSES,
    TRANSITIONS,
    Actor,
    InvalidTransition,
    RoomStatus,
    can_transition,
    transition,
)
from homeserver.rooms.upgrade_lock import Lease, UpgradeLocks, holds
from homeserver.storage import Database, Store
from homeserver.storage.factory import open_postgres, open_sqlite
from homeserver.storage.rooms import LifecycleTransition, NewRoom, RoomRecord
from tests.dbtemplate import (
    checkout_migrated_schema,
    copy_migrated_sqlite,
    return_schema,
    schema_dsn,
)

T = TypeVar("T")

#: DESIGN.md §3.2, written out independently of the module under test: (from, to, by).
ALLOWED = {
    ("active", "upgrading", "requester"),
    ("upgrading", "active", "system"),
    ("upgrading", "tombstoned", "system"),
    ("active", "tombstoned", "system"),
    # "a tombstone arrived another way (… or federation)": recorded with its own actor.
    ("active", "tombstoned", "federation"),
}

# ----------------------------------------------------------------------------- the pure machine


def test_transition_table_is_the_designed_one() -> None:
    assert {(t.source, t.target, t.actor) for t in TRANSITIONS} == ALLOWED
    assert INITIAL_STATUS == "active"
    assert TERMINAL_STATUSES == {"tombstoned"}


class PureLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.status = INITIAL_STATUS
        self.path: list[RoomStatus] = [self.status]

    @rule(to=st.sampled_from(list(RoomStatus)), actor=st.sampled_from(list(Actor)))
    def request(self, to: RoomStatus, actor: Actor) -> None:
        legal = (self.status, to, actor) in ALLOWED
        assert can_transition(self.status, to, actor) is legal
        if legal:
            move = transition(self.status, to, actor)
            assert (move.source, move.target, move.actor) == (self.status, to, actor)
            self.status = to
            self.path.append(to)
        else:
            with pytest.raises(InvalidTransition):
                transition(self.status, to, actor)

    @invariant()
    def terminal_is_terminal(self) -> None:
        if self.status in TERMINAL_STATUSES:
            assert not any(can_transition(self.status, t, a) for t in RoomStatus for a in Actor)

    @invariant()
    def path_is_legal(self) -> None:
        for source, target in itertools.pairwise(self.path):
            assert any((source, target, a) in ALLOWED for a in Actor), self.path


TestPureLifecycle = PureLifecycle.TestCase
# Three statuses and three actors: 20 steps reach every transition from every status many times
# over in 200 runs (longer runs only repeat them, and cost a minute at the end of the suite).
TestPureLifecycle.settings = settings(
    max_examples=settings.default.max_examples * 2, stateful_step_count=20
)


# ----------------------------------------------------------------------------- the store machine

LEASE_SECONDS = 60.0
LEASE_MS = int(LEASE_SECONDS * 1000)
USERS = ("@u0:test.example", "@u1:test.example", "@u2:test.example")


class Clock:
    """Milliseconds that tick once per read (leases of one holder stay distinct, as with a real
    clock) and can jump past a lease."""

    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        self.now += 1
        return self.now


class _Notifier:
    def notify(self, room_ids: list[str]) -> None:
        pass


@dataclass(frozen=True)
class Outcome:
    """What one operation of a round reported."""

    op: str
    ok: bool
    lease: Lease | None = None


class Harness:
    """One database and the real lifecycle writers over it, driven from a private event loop
    (hypothesis' stateful rules are synchronous)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, store: Store) -> None:
        self.loop = loop
        self.store = store
        self.clock = Clock()
        #: what the rounds did, so the test can show it exercised every writer.
        self.stats: Counter[str] = Counter()
        self.locks = UpgradeLocks(store, self.clock, LEASE_SECONDS)
        self.remote = RemoteUpgrades(
            store=store,
            notifier=_Notifier(),  # type: ignore[arg-type]
            clock=self.clock,
            server_name="hs.example",
        )

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    async def new_room(self) -> str:
        room_id = f"!{uuid.uuid4().hex}:test.example"
        async with self.store.db.transaction("fuzz_new_room") as txn:
            await self.store.rooms.create_room_txn(
                txn, NewRoom(room_id, "10", USERS[0], self.clock())
            )
        return room_id

    # --- the writers (the same steps as the services, on the same store methods) ---------

    async def commit(self, lease: Lease) -> bool:
        """An upgrade's commit: under the row lock, only if ``lease`` still holds the room."""
        transition(RoomStatus.UPGRADING, RoomStatus.TOMBSTONED, Actor.SYSTEM)
        async with self.store.db.transaction("fuzz_commit") as txn:
            await self.store.persister.lock_rooms_txn(txn, [lease.room_id])
            row = await self.store.upgrades.get_lock_row_txn(txn, lease.room_id)
            if row is None or not holds(row, lease):
                return False
            return await self.store.rooms.transition_txn(
                txn,
                lease.room_id,
                RoomStatus.UPGRADING,
                RoomStatus.TOMBSTONED,
                actor=Actor.SYSTEM,
                reason=f"upgraded by {lease.holder} lease {lease.expires_ts}",
                ts=self.clock(),
                replacement_room_id="!new:test.example",
            )

    async def local_tombstone(self, room_id: str) -> bool:
        """A client's tombstone state PUT (events_service): refused while upgrading."""
        async with self.store.db.transaction("fuzz_tombstone") as txn:
            await self.store.persister.lock_rooms_txn(txn, [room_id])
            status = RoomStatus(await self.store.room_use.get_room_status_txn(txn, room_id))
            if status is not RoomStatus.ACTIVE:
                return False
            transition(status, RoomStatus.TOMBSTONED, Actor.SYSTEM)
            return await self.store.rooms.transition_txn(
                txn,
                room_id,
                RoomStatus.ACTIVE,
                RoomStatus.TOMBSTONED,
                actor=Actor.SYSTEM,
                reason="tombstone sent",
                ts=self.clock(),
                replacement_room_id="!next:test.example",
            )

    async def remote_tombstone(self, room_id: str) -> None:
        """A tombstone received over federation (what it wrote is read from the history)."""
        event = SimpleNamespace(
            content={"replacement_room": "!elsewhere:remote.example"},
            sender="@r:remote.example",
        )
        await self.remote.on_tombstone(room_id, event)  # type: ignore[arg-type]


Op = tuple[str, int]

#: (operation, argument): the argument picks the user of an acquire, or the lease of a release
#: or commit (below 3: the newest lease, often still live; else an older one, often stale).
_ops = st.tuples(
    st.sampled_from(
        ["acquire"] * 3 + ["release", "commit"] * 2 + ["recover"] * 2
        + ["restart", "tombstone", "remote"]
    ),
    st.integers(0, 5),
)  # fmt: skip


def check_history(
    room: RoomRecord | None, history: list[LifecycleTransition], leases: list[Lease]
) -> None:
    """A legal chain from creation to the row's status; lock columns set exactly while
    upgrading, and then to one of the actors' ``leases``."""
    assert room is not None
    assert (history[0].from_status, history[0].to_status) == (None, "active"), history
    for before, after in itertools.pairwise(history):
        assert after.from_status == before.to_status, history
        key = (after.from_status, after.to_status, after.actor)
        assert key in ALLOWED, f"illegal transition {key}: {history}"
    assert room.status == history[-1].to_status, (room, history)
    upgrading = room.status == "upgrading"
    assert (room.upgrade_lock_holder is not None) == upgrading, room
    live = [lease for lease in leases if holds(room, lease)]
    assert len(live) == (1 if upgrading else 0), (room, live)
    if room.status == "tombstoned":
        assert room.replacement_room_id is not None, room


def _store_machine(harness: Harness) -> type[RuleBasedStateMachine]:
    class StoreLifecycle(RuleBasedStateMachine):
        @initialize()
        def start(self) -> None:
            self.room_id = harness.run(harness.new_room())
            #: every lease any actor was ever given on this room (held or long gone).
            self.leases: list[Lease] = []
            self.rows_seen = 1  # the creation entry

        async def _one(self, op: str, arg: int) -> Outcome:
            if op == "acquire":
                lease = await harness.locks.acquire(self.room_id, USERS[arg % len(USERS)], "11")
                return Outcome(op, lease is not None, lease)
            if op in ("release", "commit"):
                if not self.leases:
                    lease = Lease(self.room_id, USERS[0], harness.clock.now)  # never granted
                elif arg < 3:
                    lease = self.leases[-1]
                else:
                    lease = self.leases[arg % len(self.leases)]
                if op == "release":
                    return Outcome(op, await harness.locks.release(lease, "failed"), lease)
                return Outcome(op, await harness.commit(lease), lease)
            if op == "recover":
                return Outcome(op, await harness.locks.recover_if_expired(self.room_id))
            if op == "restart":
                # Start-up recovery takes over even a live lock (documented as safe: the
                # upgrader's commit checks its lease), which the round checks below hold to.
                recovered = await harness.locks.recover_own()
                return Outcome(op, self.room_id in recovered)
            if op == "tombstone":
                return Outcome(op, await harness.local_tombstone(self.room_id))
            await harness.remote_tombstone(self.room_id)
            return Outcome(op, False)  # counted from the history's "federation" rows

        @rule(ops=st.lists(_ops, min_size=1, max_size=6))
        def race(self, ops: list[Op]) -> None:
            """The operations run as concurrent tasks on the one room."""
            room = harness.run(harness.store.rooms.get_room(self.room_id))
            if room is not None and room.status == "tombstoned":
                self.another_room()  # nothing more can happen to this one

            async def all_at_once() -> list[Outcome]:
                return list(await asyncio.gather(*(self._one(op, arg) for op, arg in ops)))

            outcomes = harness.run(all_at_once())
            harness.stats["rounds"] += 1
            for o in outcomes:
                harness.stats[f"{o.op} {'ok' if o.ok else 'no'}"] += 1
            granted = [o.lease for o in outcomes if o.op == "acquire" and o.lease is not None]
            self.leases.extend(granted)
            history = harness.run(harness.store.rooms.get_transitions(self.room_id))
            first_new = self.rows_seen
            new_rows = history[first_new:]
            self.rows_seen = len(history)
            # Each reported success wrote exactly one transition, and nothing else wrote any.
            succeeded = [o for o in outcomes if o.ok]
            remote_rows = [r for r in new_rows if r.actor == "federation"]
            harness.stats["remote tombstones"] += len(remote_rows)
            assert len(new_rows) == len(succeeded) + len(remote_rows), (ops, outcomes, new_rows)
            ups = [r for r in new_rows if (r.from_status, r.to_status) == ("active", "upgrading")]
            assert len(ups) == len(granted), (ups, granted)
            # Never two holders: every lock ended in this round was ended by the lease that
            # took it (a release or a commit) or by a recovery; a stale lease ends nothing.
            ended: dict[str, list[int]] = {"active": [], "tombstoned": []}
            for index in range(max(first_new, 1), len(history)):
                if history[index].from_status == "upgrading":
                    # keyed by when the lock was taken (the lease's start)
                    ended[history[index].to_status].append(history[index - 1].ts)
            for outcome in outcomes:
                if outcome.ok and outcome.op in ("release", "commit"):
                    assert outcome.lease is not None
                    taken_at = outcome.lease.expires_ts - LEASE_MS
                    target = "active" if outcome.op == "release" else "tombstoned"
                    assert taken_at in ended[target], (outcome, history)
                    ended[target].remove(taken_at)
            recoveries = [o for o in outcomes if o.ok and o.op in ("recover", "restart")]
            assert len(ended["active"]) == len(recoveries), (outcomes, history)
            assert not ended["tombstoned"], (outcomes, history)

        @rule(ms=st.sampled_from([LEASE_MS + 1, 1, 1_000]))
        def time_passes(self, ms: int) -> None:
            harness.clock.now += ms

        @rule()
        def another_room(self) -> None:
            """Start over on a fresh room (tombstoned is terminal)."""
            self.room_id = harness.run(harness.new_room())
            self.leases, self.rows_seen = [], 1

        @invariant()
        def history_is_legal(self) -> None:
            room = harness.run(harness.store.rooms.get_room(self.room_id))
            history = harness.run(harness.store.rooms.get_transitions(self.room_id))
            check_history(room, history, self.leases)

    return StoreLifecycle


@pytest.fixture
def harness(db_engine: str, tmp_path: Path) -> Iterator[Harness]:
    """A migrated database on ``db_engine`` opened on a loop of its own."""
    loop = asyncio.new_event_loop()
    schema: str | None = None

    async def open_db() -> Database:
        nonlocal schema
        if db_engine == "sqlite":
            await copy_migrated_sqlite(tmp_path / "lifecycle.db")
            return await open_sqlite(tmp_path / "lifecycle.db")
        schema = await checkout_migrated_schema()
        return await open_postgres(schema_dsn(schema), 1, 6, schema=schema)

    db = loop.run_until_complete(open_db())
    try:
        yield Harness(loop, Store(db))
    finally:
        loop.run_until_complete(db.close())
        if schema is not None:
            return_schema(schema)
        loop.close()


def test_store_transitions_under_racing_actors(harness: Harness, db_engine: str) -> None:
    # Twice the profile's examples: on PostgreSQL a round's other writers usually reach the
    # room's row before a restart does, so a recovering restart is rare (a few per 650
    # rounds) and the coverage check below needs the longer run to be dependable.
    examples = 2 * settings.default.max_examples
    run_state_machine_as_test(
        _store_machine(harness),
        settings=settings(max_examples=examples, stateful_step_count=30),
    )
    # The machine reached every writer's success and refusal (else it proves little).
    stats = harness.stats
    for op in ("acquire", "release", "commit", "recover", "restart", "tombstone"):
        assert stats[f"{op} ok"] > 0 and stats[f"{op} no"] > 0, (op, dict(stats))
    assert stats["remote tombstones"] > 0, dict(stats)
    print(f"\n{db_engine}: {dict(sorted(stats.items()))}")


Unused = Callable[[], None]


def test_the_history_check_can_fail(harness: Harness) -> None:
    """The store's compare-and-set records whatever its caller asks (the lifecycle module is
    the gate): a move written past the gate is caught by the history check."""
    store = harness.store
    room_id = harness.run(harness.new_room())
    lease = harness.run(harness.locks.acquire(room_id, USERS[0], "11"))
    assert lease is not None
    room = harness.run(store.rooms.get_room(room_id))
    check_history(room, harness.run(store.rooms.get_transitions(room_id)), [lease])
    with pytest.raises(AssertionError, match=r"\(|live"):
        check_history(room, harness.run(store.rooms.get_transitions(room_id)), [])
    illegal = store.rooms.transition(
        room_id, "upgrading", "upgrading", actor="requester", reason="x", ts=harness.clock()
    )
    assert harness.run(illegal)
    with pytest.raises(AssertionError, match="illegal transition"):
        check_history(
            harness.run(store.rooms.get_room(room_id)),
            harness.run(store.rooms.get_transitions(room_id)),
            [lease],
        )
