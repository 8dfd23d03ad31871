"""Reverse topological power ordering tie-breaks, mainline ordering and the chain helpers."""

from __future__ import annotations

import pytest

from homeserver.auth.state_res.chains import auth_difference, conflicted_state_subgraph
from homeserver.auth.state_res.common import separate_v1, separate_v2
from homeserver.auth.state_res.loader import EventLoader
from homeserver.auth.state_res.ordering import mainline_order, reverse_topological_power_order
from homeserver.room_versions import V11, V12, RoomVersion
from tests.unit.state_res.builder import (
    ALICE,
    BOB,
    CAROL,
    JR_KEY,
    PL_KEY,
    V2_FAMILY,
    Room,
)

v2_family = pytest.mark.parametrize("version", V2_FAMILY, ids=lambda v: f"v{v.identifier}")

# --- tie-breaks of the reverse topological power ordering, seen through resolve_state ----------


@pytest.mark.parametrize(
    ("senders", "ts", "winner"),
    [
        # Alice (100 / v12 creator) sorts before Bob (50) even with the later timestamp, so
        # Bob's change, applied last, is the resolved one.
        ((ALICE, BOB), (5_000_001, 5_000_000), 1),
        ((BOB, ALICE), (5_000_000, 5_000_001), 0),
        # Equal power: the earlier timestamp sorts first; the later one wins.
        ((BOB, CAROL), (5_000_000, 5_000_001), 1),
        ((BOB, CAROL), (5_000_001, 5_000_000), 0),
        # Equal power and timestamp: the smaller event ID sorts first ("max" below).
        ((BOB, CAROL), (5_000_000, 5_000_000), None),
    ],
    ids=["pl-beats-ts", "pl-beats-ts-swapped", "ts-b-later", "ts-a-later", "event-id"],
)
@v2_family
async def test_power_event_tie_breaks(
    version: RoomVersion, senders: tuple[str, str], ts: tuple[int, int], winner: int | None
) -> None:
    room = Room(version)
    base = room.genesis({ALICE: 100, BOB: 50, CAROL: 50}, members=[BOB, CAROL])
    a, b = base.fork(), base.fork()
    events = [
        a.put(JR_KEY[0], senders[0], {"join_rule": "invite"}, ts=ts[0]),
        b.put(JR_KEY[0], senders[1], {"join_rule": "public"}, ts=ts[1]),
    ]

    resolved = await room.resolve(a.state, b.state)

    expected = max(e.event_id for e in events) if winner is None else events[winner].event_id
    assert resolved == {**base.state, JR_KEY: expected}


@v2_family
async def test_power_order_follows_auth_dag_before_tie_breaks(version: RoomVersion) -> None:
    """A chain PL0 <- PL1 <- PL2 comes out in auth order even though the timestamps run the
    other way and the last is sent by a less powerful user."""
    room = Room(version)
    base = room.genesis({ALICE: 100}, members=[BOB])
    pl0 = base.state[PL_KEY]
    pl1 = base.put(PL_KEY[0], ALICE, room.power_levels({ALICE: 100, BOB: 50}), ts=9_000_002)
    pl2 = base.put(PL_KEY[0], BOB, room.power_levels({ALICE: 100, BOB: 50, CAROL: 1}), ts=9_000_001)
    loader = EventLoader(room.fetch)
    await loader.load_auth_closure([pl2.event_id])

    ordered = reverse_topological_power_order(
        version, {pl2.event_id, pl0, pl1.event_id}, loader, room.create_event
    )

    assert ordered == [pl0, pl1.event_id, pl2.event_id]


# --- mainline ordering -----------------------------------------------------------------------


async def test_mainline_positions_order_events_before_timestamps() -> None:
    room = Room(V11)
    base = room.genesis({ALICE: 100}, members=[BOB])
    pl0 = base.state[PL_KEY]
    early_topic = base.topic(ALICE, "under PL0", ts=9_000_009)
    pl1 = base.put(PL_KEY[0], ALICE, room.power_levels({ALICE: 100, BOB: 1}))
    late_a = base.topic(ALICE, "under PL1 (a)", ts=9_000_002)
    late_b = base.topic(ALICE, "under PL1 (b)", ts=9_000_001)
    create_only = room.factory.event(
        "m.room.topic", ALICE, {"topic": "no PL"}, state_key="", auth=[room.create_event]
    )
    room.events[create_only.event_id] = create_only
    ids = [late_a.event_id, early_topic.event_id, late_b.event_id, create_only.event_id]
    loader = EventLoader(room.fetch)
    await loader.load_auth_closure(ids)

    assert mainline_order(ids, pl1.event_id, loader) == [
        create_only.event_id,  # no PL event in its auth events: position infinity
        early_topic.event_id,  # PL0: position 1
        late_b.event_id,  # PL1: position 0, earlier timestamp
        late_a.event_id,
    ]
    # Without a PL event in the partial state every position is infinite: timestamps decide.
    assert mainline_order(ids, None, loader) == [
        create_only.event_id,  # the factory's default timestamp is the smallest
        late_b.event_id,
        late_a.event_id,
        early_topic.event_id,
    ]
    assert pl0 != pl1.event_id


# --- chains and splitting ------------------------------------------------------------------


async def test_conflicted_subgraph_and_auth_difference() -> None:
    """PL0 <- PL1 <- PL2 <- topic. With {PL0, PL2} conflicted the subgraph adds PL1, which the
    auth difference of the (stale) state sets misses."""
    room = Room(V12)
    base = room.genesis({ALICE: 100}, members=[BOB])
    pl0 = base.state[PL_KEY]
    pl1 = base.put(PL_KEY[0], ALICE, room.power_levels({ALICE: 100, BOB: 50})).event_id
    pl2 = base.put(PL_KEY[0], BOB, room.power_levels({ALICE: 100, BOB: 50, CAROL: 5})).event_id
    base.topic(BOB, "t")
    good = dict(base.state)
    stale = {**good, PL_KEY: pl0}
    loader = EventLoader(room.fetch)
    await loader.load_auth_closure([*good.values(), pl0])

    assert auth_difference(loader, [good, stale]) == set()
    # PL1 is on the path PL2 -> PL1 -> PL0. So are Bob's join (cited by PL2, citing PL0 and the
    # join rules) and the join rules (citing PL0). Alice's join, cited by PL1, reaches no
    # conflicted event (v12: it cites nothing), and the topic is above PL2, not between.
    bob_join = good[("m.room.member", BOB)]
    assert conflicted_state_subgraph(loader, {pl0, pl2}) == {pl0, pl1, pl2, bob_join, good[JR_KEY]}
    assert conflicted_state_subgraph(loader, {pl2}) == {pl2}
    assert conflicted_state_subgraph(loader, {pl0, pl1}) == {pl0, pl1}


@pytest.mark.parametrize(
    ("sets", "v1", "v2"),
    [
        ([{"k": "a"}, {"k": "a"}], ({"k": "a"}, {}), ({"k": "a"}, {})),
        ([{"k": "a"}, {"k": "b"}], ({}, {"k": {"a", "b"}}), ({}, {"k": {"a", "b"}})),
        ([{"k": "a"}, {}], ({"k": "a"}, {}), ({}, {"k": {"a"}})),
        ([{"k": "a"}, {"k": "a"}, {}], ({"k": "a"}, {}), ({}, {"k": {"a"}})),
    ],
    ids=["same", "different", "missing-in-one", "missing-in-one-of-three"],
)
def test_separate(sets: list[dict], v1: tuple, v2: tuple) -> None:
    sets = [{(k, ""): v for k, v in s.items()} for s in sets]

    def keyed(pair: tuple) -> tuple:
        return tuple({(k, ""): v for k, v in part.items()} for part in pair)

    assert separate_v1(sets) == keyed(v1)
    assert separate_v2(sets) == keyed(v2)
