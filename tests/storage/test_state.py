"""State groups: state at events, O(delta) growth, snapshots, current state."""

from __future__ import annotations

from homeserver.storage import ResolvedState, Store
from homeserver.storage.state import MAX_DELTA_CHAIN, apply_delta, diff_states
from tests.storage.helpers import ALICE, StoredRoom

BOB = "@bob:example.org"


def _user(i: int) -> str:
    return f"@user{i}:example.org"


async def test_state_at_each_event(store: Store) -> None:
    room = StoredRoom(store)
    create, join, power = await room.genesis()
    expected_after = {
        ("m.room.create", ""): create.event_id,
        ("m.room.member", ALICE): join.event_id,
        ("m.room.power_levels", ""): power.event_id,
    }
    assert await store.state.get_state_ids_at_event(power.event_id) == expected_after
    assert await store.state.get_state_ids_at_event(create.event_id, before=True) == {}
    assert await store.state.get_state_ids_at_event(create.event_id) == {
        ("m.room.create", ""): create.event_id
    }

    name1 = await room.send("m.room.name", content={"name": "one"}, state_key="")
    message = await room.send("m.room.message", content={"body": "hi"})
    name2 = await room.send("m.room.name", content={"name": "two"}, state_key="")
    bob = await room.join(BOB)

    after_name1 = {**expected_after, ("m.room.name", ""): name1.event_id}
    assert await store.state.get_state_ids_at_event(name1.event_id) == after_name1
    assert await store.state.get_state_ids_at_event(name1.event_id, before=True) == expected_after
    # A non-state event: before == after.
    assert await store.state.get_state_ids_at_event(message.event_id) == after_name1
    assert await store.state.get_state_ids_at_event(message.event_id, before=True) == after_name1
    after_name2 = {**after_name1, ("m.room.name", ""): name2.event_id}
    assert await store.state.get_state_ids_at_event(name2.event_id) == after_name2
    final = {**after_name2, ("m.room.member", BOB): bob.event_id}
    assert await store.state.get_state_ids_at_event(bob.event_id) == final
    assert await store.state.get_state_ids_at_event("$unknown") is None

    # Current state follows, with the lookups the services use.
    assert await store.state.get_current_state_ids(room.room_id) == final
    assert (
        await store.state.get_current_state_event_id(room.room_id, "m.room.name") == name2.event_id
    )
    current_name = await store.state.get_current_state_event(room.room_id, "m.room.name", "")
    assert current_name is not None and current_name.content == {"name": "two"}
    assert await store.state.get_current_state_event(room.room_id, "m.room.topic") is None
    assert await store.state.get_current_members(room.room_id) == sorted([ALICE, BOB])
    assert await store.state.get_rooms_for_user(BOB) == [room.room_id]
    # Leaving updates membership in place.
    await room.send("m.room.member", BOB, {"membership": "leave"}, state_key=BOB)
    assert await store.state.get_current_members(room.room_id) == [ALICE]
    assert await store.state.get_current_members(room.room_id, "leave") == [BOB]


async def test_storage_grows_with_the_delta(store: Store) -> None:
    """Each join of a 300-member room stores one entry row, not the room's state; snapshots
    cut the chain every MAX_DELTA_CHAIN links so reads stay bounded."""
    room = StoredRoom(store)
    await room.genesis()
    joins = []
    for i in range(300):
        joins.append(await room.join(_user(i)))

    groups = await store.state.get_state_group_for_events(e.event_id for e in joins)
    rows = await store.db.fetchall(
        "SELECT g.id, g.prev_state_group, g.chain_length, COUNT(e.state_group)"
        " FROM state_groups g LEFT JOIN state_group_entries e ON e.state_group = g.id"
        " GROUP BY g.id, g.prev_state_group, g.chain_length"
    )
    info = {int(r[0]): (r[1], int(r[2]), int(r[3])) for r in rows}
    deltas = [info[groups[e.event_id]] for e in joins]
    snapshots = [d for d in deltas if d[0] is None]
    assert all(rows_stored == 1 for prev, _, rows_stored in deltas if prev is not None)
    assert all(length <= MAX_DELTA_CHAIN for _, length, _ in deltas)
    # 303 state events in all: a snapshot every MAX_DELTA_CHAIN + 1 groups.
    assert len(snapshots) == len([g for g in info.values() if g[0] is None]) - 1  # - empty genesis
    assert 1 <= len(snapshots) <= 303 // (MAX_DELTA_CHAIN + 1) + 1
    total_rows = sum(r for _, _, r in info.values())
    assert total_rows <= 303 + sum(r for _, _, r in snapshots)

    # Reads see the whole state, through snapshots and deltas.
    state = await store.state.get_state_ids_at_event(joins[-1].event_id)
    assert state is not None and len(state) == 303
    state_mid = await store.state.get_state_ids_at_event(joins[149].event_id)
    assert state_mid is not None and len(state_mid) == 153
    assert state_mid[("m.room.member", _user(149))] == joins[149].event_id
    assert ("m.room.member", _user(150)) not in state_mid
    assert len(await store.state.get_current_state_ids(room.room_id)) == 303
    # A group in the middle of a chain reads back the same as one computed by hand.
    assert await store.state.count_group_rows(groups[joins[-1].event_id]) in (1, 303)


async def test_snapshot_reads_match_deltas(store: Store) -> None:
    room = StoredRoom(store)
    await room.genesis()
    expected: dict[tuple[str, str], str] = {}
    for e in room.events:
        expected[e.state_tuple] = e.event_id
    for i in range(MAX_DELTA_CHAIN * 2 + 5):
        # Overwrite the same few keys so snapshots stay small and deltas overwrite them.
        event = await room.send("m.room.topic", content={"topic": str(i)}, state_key=str(i % 3))
        expected[event.state_tuple] = event.event_id
        store.state._cache.clear()
        assert await store.state.get_state_ids_at_event(event.event_id) == expected
    chain_lengths = [
        int(r[0]) for r in await store.db.fetchall("SELECT chain_length FROM state_groups")
    ]
    assert max(chain_lengths) == MAX_DELTA_CHAIN
    assert chain_lengths.count(0) >= 3  # the empty genesis group plus at least two snapshots


async def test_resolved_state_and_explicit_current_state(store: Store) -> None:
    """A fork resolved by the caller: the merge event's state before is given as a map; the
    current state moves to it even though it is not a straight line from the old one."""
    room = StoredRoom(store)
    _create, _join, power = await room.genesis()
    f = room.factory
    base = await store.state.get_current_state_group(room.room_id)
    topic_a = f.event("m.room.topic", ALICE, {"topic": "a"}, state_key="", prev=[power])
    name_b = f.event("m.room.name", ALICE, {"name": "b"}, state_key="", prev=[power])
    ra = await store.persist_events([(topic_a, base)])
    rb = await store.persist_events([(name_b, base)])
    # The last write wins current state until someone resolves the fork.
    assert ("m.room.topic", "") not in await store.state.get_current_state_ids(room.room_id)

    resolved = {
        **(await store.state.get_state_group_ids(ra.current_state_group)),  # type: ignore[arg-type]
        ("m.room.name", ""): name_b.event_id,
    }
    del resolved[("m.room.power_levels", "")]  # resolution may also drop a key
    merge = f.event("m.room.message", ALICE, {"body": "m"}, prev=[topic_a, name_b])
    result = await store.persist_events(
        [(merge, ResolvedState(resolved, base_group=rb.current_state_group))]
    )
    assert await store.state.get_state_ids_at_event(merge.event_id, before=True) == resolved
    assert await store.state.get_current_state_ids(room.room_id) == resolved
    assert result.current_state_group == result.events[0].state_group_before

    # A caller can also point current state at any group explicitly.
    follow = f.event("m.room.message", ALICE, {"body": "f"}, prev=[merge])
    await store.persist_events([(follow, result.current_state_group)], current_state_group=base)
    current = await store.state.get_current_state_ids(room.room_id)
    assert current == await store.state.get_state_group_ids(base)  # type: ignore[arg-type]


def test_delta_helpers() -> None:
    old = {("a", ""): "$1", ("b", ""): "$2"}
    new = {("a", ""): "$3", ("c", ""): "$4"}
    delta = diff_states(old, new)
    assert delta == {("a", ""): "$3", ("c", ""): "$4", ("b", ""): None}
    assert apply_delta(old, delta) == new
