"""State groups: state at events, O(delta) growth, bounded reads, current state."""

from __future__ import annotations

import math
from typing import Any

import pytest

from homeserver.app import Homeserver
from homeserver.storage import ResolvedState, Store
from homeserver.storage.state import apply_delta, diff_states
from tests.harness import TestServer
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
    # Several kinds in one read (/sync), every kind asked for present.
    assert await store.state.get_rooms_by_membership(BOB, ("join", "invite", "knock")) == {
        "join": [room.room_id],
        "invite": [],
        "knock": [],
    }
    # Leaving updates membership in place.
    await room.send("m.room.member", BOB, {"membership": "leave"}, state_key=BOB)
    assert await store.state.get_current_members(room.room_id) == [ALICE]
    assert await store.state.get_current_members(room.room_id, "leave") == [BOB]
    assert await store.state.get_rooms_by_membership(BOB, ("join", "leave")) == {
        "join": [],
        "leave": [room.room_id],
    }


async def test_storage_grows_with_the_delta(store: Store) -> None:
    """Joins to a 300-member room store a few entry rows each (a delta against a base group at
    position p - lowbit(p)), not copies of the room's state, and reads stay bounded."""
    room = StoredRoom(store)
    await room.genesis()
    joins = []
    for i in range(300):
        joins.append(await room.join(_user(i)))

    stats = await store.state.group_stats(room.room_id)
    groups = stats["groups"]  # 303 state events and the empty group before the create event
    assert groups == 304 and stats["state_events"] == 303
    assert stats["root_groups"] == 1 and stats["root_rows"] == 0
    # A linear history of single-key changes: group p stores lowbit(p) rows, about
    # log2(n) / 2 on average (the room's state is 303 keys: snapshots would need ~150).
    assert stats["rows"] / groups <= math.log2(groups)
    assert stats["max_base_chain_length"] <= math.log2(groups) + 1
    # No group stores more than the state it describes.
    assert stats["max_group_rows"] <= 303

    # Reads see the whole state, through the base chains.
    state = await store.state.get_state_ids_at_event(joins[-1].event_id)
    assert state is not None and len(state) == 303
    state_mid = await store.state.get_state_ids_at_event(joins[149].event_id)
    assert state_mid is not None and len(state_mid) == 153
    assert state_mid[("m.room.member", _user(149))] == joins[149].event_id
    assert ("m.room.member", _user(150)) not in state_mid
    assert len(await store.state.get_current_state_ids(room.room_id)) == 303
    last_group = (await store.state.get_state_group_for_events([joins[-1].event_id]))[
        joins[-1].event_id
    ]
    chain = await store.state.get_base_chain(last_group)
    assert chain[0] == last_group and len(chain) - 1 <= stats["max_base_chain_length"]
    assert 1 <= await store.state.count_group_rows(last_group) <= 303


async def test_overwrites_read_back_and_stay_small(store: Store) -> None:
    """Overwriting the same few keys: every group reads back exactly (with the cache cleared),
    and merged deltas never hold more rows than there are keys."""
    room = StoredRoom(store)
    await room.genesis()
    expected: dict[tuple[str, str], str] = {}
    for e in room.events:
        expected[e.state_tuple] = e.event_id
    for i in range(105):
        event = await room.send("m.room.topic", content={"topic": str(i)}, state_key=str(i % 3))
        expected[event.state_tuple] = event.event_id
        store.state.clear_cache()
        assert await store.state.get_state_ids_at_event(event.event_id) == expected
    stats = await store.state.group_stats(room.room_id)
    assert stats["max_group_rows"] <= len(expected) == 6
    assert stats["max_base_chain_length"] <= math.log2(stats["groups"]) + 1


async def test_replaced_state_is_recorded_through_any_chain(store: Store) -> None:
    """Each accepted state event records the event it replaced at its key (None for a new
    key), read from memory or from the stored chain alike (caches cleared every other time)."""
    room = StoredRoom(store)
    await room.genesis()
    latest: dict[tuple[str, str], str] = {e.state_tuple: e.event_id for e in room.events}
    for i in range(40):
        key = str(i % 5)
        if i % 2:
            store.state.clear_cache()
        event = await room.send("m.room.topic", content={"topic": str(i)}, state_key=key)
        store.events.clear_cache()
        stored = await store.events.get_event(event.event_id)
        assert stored is not None
        assert stored.internal.replaces_state == latest.get(event.state_tuple), i
        latest[event.state_tuple] = event.event_id
    # One batch: keys set before it, keys new in it, keys set twice in it, a non-state event.
    store.state.clear_cache()
    first = await room.build("m.room.topic", content={"topic": "b0"}, state_key="0")
    batch = [first]
    for event_type, key in (
        ("m.room.topic", "new"),
        ("m.room.message", None),
        ("m.room.topic", "0"),
        ("m.room.topic", "new"),
        ("m.room.topic", "4"),
    ):
        extra = {} if key is None else {"state_key": key}
        batch.append(
            room.factory.event(
                event_type,
                ALICE,
                {"topic": "b", "body": "b"},
                prev=[batch[-1]],
                depth=batch[-1].depth + 1,
                auth=[room.create_event],
                **extra,
            )
        )
    await room.persist(*batch)
    store.events.clear_cache()
    stored = await store.events.get_events(e.event_id for e in batch)
    for event in batch:
        expected = latest.get(event.state_tuple) if event.is_state() else None
        assert stored[event.event_id].internal.replaces_state == expected, event.state_key
        if event.is_state():
            latest[event.state_tuple] = event.event_id


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


async def test_current_state_after_a_send_is_kept_in_memory_and_equals_a_fresh_read(
    server: TestServer, hs: Homeserver
):
    """A room's full state, once read (by /sync, the push evaluator…), follows the room: each
    send moves it on to the group it made, in memory, at commit; and it is what the database
    holds."""
    from tests.builders import join, make_room, say

    alice = await server.register("alice")
    room_id = await make_room(hs, alice.user_id)
    joiners = [(await server.register(f"j{i}")).user_id for i in range(5)]
    state = hs.store.state
    state.clear_cache()
    first = await state.get_current_state_group(room_id)
    assert first is not None
    await state.get_state_group_ids(first)  # a reader
    for user_id in joiners[:-1]:
        await join(hs, room_id, user_id)
    await say(hs, room_id, alice.user_id, "a message moves no state")
    await join(hs, room_id, joiners[-1])
    group = await state.get_current_state_group(room_id)
    assert group is not None
    # Moved on from group to group, never read back: the first group's map is the latest's.
    assert set(state._cache) == {group}
    kept = dict(state._cache[group])
    state.clear_cache()
    fresh = await state.get_state_group_ids(group)
    assert kept == fresh
    assert {sk for (t, sk) in fresh if t == "m.room.member"} == {alice.user_id, *joiners}


async def test_a_rolled_back_send_keeps_nothing(server: TestServer, hs: Homeserver):
    """A transaction that rolled back leaves nothing of its own in memory: every state held
    there is a group the database has, equal to what it holds (the map a send moved on is
    dropped, not kept half-moved)."""
    from homeserver.events.draft import EventDraft
    from tests.builders import join, make_room

    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await make_room(hs, alice.user_id)
    room = await hs.store.rooms.get_room(room_id)
    assert room is not None

    class Abort(Exception):
        pass

    async def send_then_fail(txn: Any) -> None:
        draft = EventDraft("m.room.topic", alice.user_id, {"topic": "never"}, "")
        await hs.sender.send_txn(txn, room, [draft])
        raise Abort

    state = hs.store.state
    await state.get_state_group_ids(await state.get_current_state_group(room_id))

    async def held_as_stored() -> None:
        kept = {group: dict(held) for group, held in state._cache.items()}
        state.clear_cache()
        for group, held in kept.items():
            assert await hs.store.db.fetchval("SELECT id FROM state_groups WHERE id = ?", group)
            assert await state.get_state_group_ids(group) == held

    with pytest.raises(Abort):
        await hs.store.db.run_in_transaction("test_abort", send_then_fail)
    await held_as_stored()
    await state.get_state_group_ids(await state.get_current_state_group(room_id))
    await join(hs, room_id, bob.user_id)
    await held_as_stored()
    current = await state.get_state_group_ids(await state.get_current_state_group(room_id))
    assert ("m.room.topic", "") not in current
    assert ("m.room.member", bob.user_id) in current


async def test_a_genesis_batch_is_followed_as_one_run(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that starts on the empty state (a new room: an upgrade's genesis with every
    member's join) records replaced state in one pass: each event's key is looked at a fixed
    number of times, not once per earlier event of the batch (a 10,000-member upgrade would be
    quadratic)."""
    from homeserver.events.event import Event
    from homeserver.storage.persist import NewRoom

    members = 60
    room = StoredRoom(store)
    factory = room.factory
    create = factory.create(ALICE)
    batch = [create, factory.member(ALICE, "join", prev=[create], auth=[create])]
    for i in range(members):
        user = f"@m{i}:test"
        batch.append(
            factory.event(
                "m.room.member",
                user,
                {"membership": "join"},
                state_key=user,
                prev=[batch[-1]],
                depth=batch[-1].depth + 1,
                auth=[create],
            )
        )
    again = factory.member(ALICE, "join", prev=[batch[-1]], auth=[create])
    batch.append(again)
    looked = 0
    real = Event.state_tuple

    def counting(event: Event) -> tuple[str, str]:
        nonlocal looked
        looked += 1
        return real.fget(event)  # type: ignore[attr-defined]

    monkeypatch.setattr(Event, "state_tuple", property(counting))
    await store.persist_events(
        [(e, None) for e in batch],
        new_room=NewRoom(room.room_id, factory.room_version.identifier, ALICE, 1000),
    )
    monkeypatch.undo()
    assert looked <= 4 * len(batch)
    store.events.clear_cache()
    stored = await store.events.get_event(again.event_id)
    assert stored is not None
    assert stored.internal.replaces_state == batch[1].event_id
