"""How state groups are laid out ("binary lifting" deltas, see homeserver/storage/state.py) and
that every group reads back exactly what a naive replay of the deltas gives: big rooms, forks,
resolved states with removals, rows written before positions existed, random histories."""

from __future__ import annotations

import math
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homeserver.events.event import Event
from homeserver.storage import ResolvedState, Store
from homeserver.storage.state import (
    StateDelta,
    StateGroupWrites,
    StateMap,
    apply_delta,
    base_position,
)
from tests.storage.helpers import ALICE, StoredRoom


def _user(i: int) -> str:
    return f"@user{i}:example.org"


async def _layout(store: Store) -> dict[int, tuple[int | None, int | None, int, int, int]]:
    """group → (prev, base, position, chain_length, rows stored)."""
    rows = await store.db.fetchall(
        "SELECT g.id, g.prev_state_group, g.base_group, g.position, g.chain_length,"
        " (SELECT COUNT(*) FROM state_group_entries e WHERE e.state_group = g.id)"
        " FROM state_groups g"
    )
    return {
        int(g): (
            None if prev is None else int(prev),
            None if base is None else int(base),
            int(pos),
            int(length),
            int(n),
        )
        for g, prev, base, pos, length, n in rows
    }


def _check_layout(layout: dict[int, tuple[int | None, int | None, int, int, int]]) -> None:
    """Positions count the prev-path; bases sit at p - lowbit(p) on it; chains are short."""
    for _group, (prev, base, position, length, _rows) in layout.items():
        if prev is None:
            assert (base, position, length) == (None, 0, 0)
            continue
        assert position == layout[prev][2] + 1
        assert base is not None and layout[base][2] == base_position(position)
        assert length == layout[base][3] + 1
        assert length <= bin(position).count("1")


async def _check_events(store: Store, events: list[Event], expected: dict[str, Any]) -> None:
    """Each event's state before and after equals the replay (cache cleared before each)."""
    for event in events:
        before, after = expected[event.event_id]
        store.state.clear_cache()
        assert await store.state.get_state_ids_at_event(event.event_id, before=True) == before
        store.state.clear_cache()
        assert await store.state.get_state_ids_at_event(event.event_id) == after


async def test_big_room_rows_and_chains(store: Store) -> None:
    """1,000 joins: O(log n) rows per state event, base chains <= log2(n) + 1 links, and the
    state at every 37th event equals a naive replay."""
    room = StoredRoom(store)
    events = await room.genesis()
    create = events[0]
    state: StateMap = {}
    expected: dict[str, tuple[StateMap, StateMap]] = {}
    for e in events:
        before = dict(state)
        state[e.state_tuple] = e.event_id
        expected[e.event_id] = (before, dict(state))
    prev = events[-1]
    pending: list[Event] = []
    for i in range(1000):
        join = room.factory.member(_user(i), "join", prev=[prev], auth=[create])
        before = dict(state)
        state[join.state_tuple] = join.event_id
        expected[join.event_id] = (before, dict(state))
        pending.append(join)
        events.append(join)
        prev = join
        if len(pending) == 50:
            await room.persist(*pending)
            pending = []

    stats = await store.state.group_stats(room.room_id)
    n = stats["groups"]
    assert n == 1004 and stats["state_events"] == 1003
    # Snapshots every 51 groups would store ~500 rows per event here; lowbit deltas ~5.
    assert stats["rows"] / stats["state_events"] <= math.log2(n) / 2 + 1
    assert stats["max_base_chain_length"] <= math.log2(n) + 1
    assert stats["max_group_rows"] <= 512  # the group at position 512 stores the first 512 keys
    _check_layout(await _layout(store))

    await _check_events(store, [*events[::37], events[-1]], expected)
    assert await store.state.get_current_state_ids(room.room_id) == state


async def test_forks_and_resolved_states(store: Store) -> None:
    """Two branches from one group, a resolved merge that also removes keys, a resolved state
    without a base, and a line continuing after each: every event reads back its replay."""
    room = StoredRoom(store)
    genesis = await room.genesis()
    create = genesis[0]
    f = room.factory
    fork_group = await store.state.get_current_state_group(room.room_id)
    assert fork_group is not None
    fork_state = await store.state.get_state_group_ids(fork_group)
    expected: dict[str, tuple[StateMap, StateMap]] = {}
    checked: list[Event] = []

    async def branch(
        start: Event, group: int, state: StateMap, count: int, tag: str
    ) -> tuple[Event, int, StateMap]:
        """``count`` state events (overwriting a few keys, joining users) built on ``start``."""
        prev, batch = start, []
        state = dict(state)
        for i in range(count):
            if i % 3 == 0:
                event = f.member(_user(i), "join", prev=[prev], auth=[create])
            else:
                event = f.event(
                    "m.room.topic",
                    ALICE,
                    {"topic": f"{tag}{i}"},
                    state_key=str(i % 4),
                    prev=[prev],
                    auth=[create],
                )
            before = dict(state)
            state[event.state_tuple] = event.event_id
            expected[event.event_id] = (before, dict(state))
            batch.append(event)
            prev = event
        result = await store.persist_events([(batch[0], group)] + [(e, None) for e in batch[1:]])
        checked.extend(batch)
        last = result.events[-1].state_group_after
        assert last is not None
        return prev, last, state

    a_last, _a_group, a_state = await branch(genesis[-1], fork_group, fork_state, 23, "a")
    b_last, b_group, b_state = await branch(genesis[-1], fork_group, fork_state, 14, "b")

    # Resolve: A's state with some of B's values, minus a topic and a member (removals).
    resolved = dict(a_state)
    resolved.update({k: v for k, v in b_state.items() if k[0] == "m.room.topic" and k[1] != "3"})
    del resolved[("m.room.topic", "2")]
    del resolved[("m.room.member", _user(3))]
    merge = f.event("m.room.message", ALICE, {"body": "m"}, prev=[a_last, b_last], auth=[create])
    merged = await store.persist_events([(merge, ResolvedState(resolved, base_group=b_group))])
    expected[merge.event_id] = (resolved, resolved)
    checked.append(merge)
    merge_group = merged.events[0].state_group_after
    assert merge_group is not None
    # Continue after the merge, re-adding a removed key on the way.
    _, _, after_state = await branch(merge, merge_group, resolved, 40, "c")
    assert ("m.room.topic", "2") in after_state

    # A resolved state given without a base is stored whole, then built on.
    orphan = f.event("m.room.message", ALICE, {"body": "o"}, prev=[merge], auth=[create])
    whole = {k: v for k, v in after_state.items() if k[0] != "m.room.topic"}
    rooted = await store.persist_events([(orphan, ResolvedState(whole))])
    expected[orphan.event_id] = (whole, whole)
    checked.append(orphan)
    root_group = rooted.events[0].state_group_after
    assert root_group is not None
    await branch(orphan, root_group, whole, 9, "d")

    _check_layout(await _layout(store))
    await _check_events(store, checked, expected)
    # Reads through a cached ancestor agree with cold reads.
    store.state.clear_cache()
    for event in checked:
        assert (
            await store.state.get_state_ids_at_event(event.event_id) == expected[event.event_id][1]
        )


async def test_groups_written_before_positions(store: Store) -> None:
    """Rows from before migration 006 (a snapshot and a delta on it, position 0) read as before,
    and new groups built on them count positions from there."""
    room_id = "!legacy:example.org"
    async with store.db.transaction("legacy") as txn:
        snapshot = await txn.fetchval(
            "INSERT INTO state_groups (room_id, prev_state_group, base_group, chain_length)"
            " VALUES (?, NULL, NULL, 0) RETURNING id",
            room_id,
        )
        delta = await txn.fetchval(
            "INSERT INTO state_groups (room_id, prev_state_group, base_group, chain_length)"
            " VALUES (?, ?, ?, 1) RETURNING id",
            room_id,
            snapshot,
            snapshot,
        )
        await txn.executemany(
            "INSERT INTO state_group_entries (state_group, type, state_key, event_id)"
            " VALUES (?, ?, ?, ?)",
            [(snapshot, "t", "a", "$a"), (snapshot, "t", "b", "$b"), (delta, "t", "a", None)],
        )
    expected = {int(delta): {("t", "b"): "$b"}}
    group, state = int(delta), expected[int(delta)]
    async with store.db.transaction("new") as txn:
        for i in range(20):
            step: StateDelta = {("t", f"k{i % 5}"): f"${i}", ("t", "b"): None if i == 7 else "$b"}
            group = await store.state.create_state_group_txn(txn, room_id, group, step)
            state = apply_delta(state, step)
            expected[group] = state
    for g, want in expected.items():
        store.state.clear_cache()
        assert await store.state.get_state_group_ids(g) == want
    stats = await store.state.group_stats(room_id)
    assert stats["max_base_chain_length"] <= 1 + math.log2(20) + 1


async def test_current_state_cache(store: Store) -> None:
    """Current state is cached under the room's current group: copies, replaced on change."""
    room = StoredRoom(store)
    await room.genesis()
    first = await store.state.get_current_state_ids(room.room_id)
    first[("x", "")] = "$mutated"
    second = await store.state.get_current_state_ids(room.room_id)
    assert ("x", "") not in second and len(second) == 3
    name = await room.send("m.room.name", content={"name": "n"}, state_key="")
    assert (await store.state.get_current_state_ids(room.room_id))[("m.room.name", "")] == (
        name.event_id
    )
    group = await store.state.get_current_state_group(room.room_id)
    assert group is not None
    assert await store.state.get_state_group_ids(group) == await store.state.get_current_state_ids(
        room.room_id
    )
    assert await store.state.get_current_state_ids("!unknown:example.org") == {}


# --- random histories ------------------------------------------------------------------------

_KEYS = [("k", str(i)) for i in range(6)]
#: one step: (where to build: 0-5 the latest group, 6 an earlier group, 7 nothing), which
#: earlier group, and the delta (key index → value index, None removes).
_STEP = st.tuples(
    st.integers(0, 7),
    st.integers(0, 1000),
    st.dictionaries(st.integers(0, len(_KEYS) - 1), st.none() | st.integers(0, 3), max_size=3),
)


async def _random_history(
    store: Store, steps: list[tuple[int, int, dict[int, int | None]]]
) -> None:
    room_id = f"!{uuid.uuid4().hex}:example.org"
    groups: list[int] = []
    replay: dict[int, StateMap] = {}
    async with store.db.transaction("random_history") as txn:
        for n, (where, pick, raw) in enumerate(steps):
            if not groups or where == 7:
                prev = None
            elif where == 6:
                prev = groups[pick % len(groups)]
            else:
                prev = groups[-1]
            delta: StateDelta = {
                _KEYS[k]: None if v is None else f"${n}.{v}" for k, v in raw.items()
            }
            group = await store.state.create_state_group_txn(txn, room_id, prev, delta)
            replay[group] = apply_delta({} if prev is None else replay[prev], delta)
            groups.append(group)
    # Cold reads, then reads starting from cached ancestors.
    for group in groups:
        store.state.clear_cache()
        assert await store.state.get_state_group_ids(group) == replay[group]
    store.state.clear_cache()
    for group in groups:
        assert await store.state.get_state_group_ids(group) == replay[group]
    layout = await _layout(store)
    _check_layout({g: layout[g] for g in groups})
    for group in groups:
        # A delta never holds more keys than exist.
        assert layout[group][4] <= len(_KEYS)


_HYPOTHESIS = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture]}


@settings(max_examples=50, **_HYPOTHESIS)  # type: ignore[arg-type]
@given(steps=st.lists(_STEP, max_size=70))
async def test_random_histories_sqlite(store: Store, db_engine: str, steps: Any) -> None:
    if db_engine != "sqlite":
        return  # test_random_histories_postgres runs fewer examples there
    await _random_history(store, steps)


@settings(max_examples=15, **_HYPOTHESIS)  # type: ignore[arg-type]
@given(steps=st.lists(_STEP, max_size=70))
async def test_random_histories_postgres(store: Store, db_engine: str, steps: Any) -> None:
    if db_engine != "postgres":
        return  # test_random_histories_sqlite runs more examples there
    await _random_history(store, steps)


async def test_a_transactions_group_writes_live_in_its_own_context(store: Store) -> None:
    """The writer's memo (IDs taken ahead, buffered rows) belongs to one transaction: announced
    groups get their IDs together, and the next transaction starts from nothing."""
    room_id = f"!{uuid.uuid4().hex}:example.org"
    async with store.db.transaction("announced") as txn:
        assert txn.context.get(StateGroupWrites) is None
        store.state.expect_groups_txn(txn, 3)
        first = await store.state.create_state_group_txn(txn, room_id, None, {("t", ""): "$1"})
        writes = txn.context.get(StateGroupWrites)
        assert writes is not None and len(writes.free_ids) == 2
        second = await store.state.create_state_group_txn(txn, room_id, first, {("t", ""): "$2"})
        assert second == first + 1
    async with store.db.transaction("next") as txn:
        assert txn.context.get(StateGroupWrites) is None
        third = await store.state.create_state_group_txn(txn, room_id, second, {("u", ""): "$3"})
    assert await store.state.get_state_group_ids(third) == {("t", ""): "$2", ("u", ""): "$3"}
