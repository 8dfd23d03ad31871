"""Where state resolution v2.1 (room v12, MSC4297) differs from v2, and rejected events.

Both MSC4297 scenarios need a state set that is *stale* (older than its own auth chains say),
as a partial /state response can give; the tests build it by swapping one entry back.
"""

from __future__ import annotations

import pytest

from homeserver.room_versions import RoomVersion, StateResAlgorithm
from tests.unit.state_res.builder import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    JR_KEY,
    PL_KEY,
    TOPIC_KEY,
    V2_FAMILY,
    Room,
    member_key,
)

versions = pytest.mark.parametrize("version", ALL_VERSIONS, ids=lambda v: f"v{v.identifier}")
v2_family = pytest.mark.parametrize("version", V2_FAMILY, ids=lambda v: f"v{v.identifier}")


def algorithm(version: RoomVersion) -> StateResAlgorithm:
    return version.state_res


def build_problem_a(room: Room) -> tuple[dict, dict, str, str, dict]:
    """Alice sets join rules JR1 then JR2, then leaves. One state set is stale: it still has
    JR1. Both agree that Alice has left."""
    base = room.genesis()
    jr1 = base.put(JR_KEY[0], ALICE, {"join_rule": "invite"})
    jr2 = base.put(JR_KEY[0], ALICE, {"join_rule": "public"})
    base.member(ALICE, "leave")
    good = dict(base.state)
    stale = {**good, JR_KEY: jr1.event_id}
    return good, stale, jr1.event_id, jr2.event_id, base.state


@versions
async def test_problem_a_state_reset_fixed_by_starting_from_empty_state(
    version: RoomVersion,
) -> None:
    """v2 replays JR1 and JR2 on the unconflicted state, where Alice has left, so both fail and
    the room loses its join rules (a state reset). v2.1 replays them from an empty state, using
    their own auth events (Alice joined): JR2 wins. v1 keeps JR1 (the shallower one)."""
    room = Room(version)
    good, stale, jr1, jr2, _ = build_problem_a(room)

    resolved = await room.resolve(good, stale)

    expected = {k: v for k, v in good.items() if k != JR_KEY}
    if algorithm(version) is StateResAlgorithm.V1:
        expected[JR_KEY] = jr1
    elif algorithm(version) is StateResAlgorithm.V2_1:
        expected[JR_KEY] = jr2
    assert resolved == expected


def build_problem_b(room: Room) -> tuple[dict, dict, list[str]]:
    """Alice (PL0) promotes Bob (PL1); Bob promotes Carol (PL2); Carol sets the topic. One
    state set is stale: it has PL0, though its topic's auth chain runs through PL2 and PL1."""
    users = {ALICE: 100}
    base = room.genesis(users, members=[BOB, CAROL])
    pl0 = base.state[PL_KEY]
    pl1 = base.put(PL_KEY[0], ALICE, room.power_levels({**users, BOB: 50}))
    pl2 = base.put(PL_KEY[0], BOB, room.power_levels({**users, BOB: 50, CAROL: 50}))
    base.topic(CAROL, "Carol's topic")
    good = dict(base.state)
    stale = {**good, PL_KEY: pl0}
    return good, stale, [pl0, pl1.event_id, pl2.event_id]


@versions
async def test_problem_b_conflicted_state_subgraph_replays_intermediate_events(
    version: RoomVersion,
) -> None:
    """Only PL0 and PL2 are conflicted and the auth difference is empty, so v2 replays PL0 then
    PL2, which fails (Bob is 0 under PL0): the PLs reset to PL0. v2.1 adds PL1, which lies on
    the auth path from PL2 to PL0, so PL1 then PL2 pass: PL2."""
    room = Room(version)
    good, stale, (pl0, _pl1, pl2) = build_problem_b(room)

    resolved = await room.resolve(good, stale)

    winner = pl2 if algorithm(version) is StateResAlgorithm.V2_1 else pl0
    assert resolved == {**good, PL_KEY: winner}
    assert resolved[TOPIC_KEY] == good[TOPIC_KEY]


@v2_family
async def test_rejected_events_are_never_used_as_auth_events(version: RoomVersion) -> None:
    """Problem A again, with the event that would authorise JR1/JR2 marked rejected.

    v2 (unconflicted start): Alice's *leave* is in the state, but rejected, so each JR event
    falls back to its own auth event, Alice's join, and passes: JR2.
    v2.1 (empty start): Alice's *join*, the JR events' own auth event, is rejected, and the
    state has no member event for her: both fail and the join rules are gone."""
    room = Room(version)
    good, stale, _jr1, jr2, _ = build_problem_a(room)
    if algorithm(version) is StateResAlgorithm.V2_1:
        join = room.events[room.events[jr2].auth_event_ids()[-1]]
        assert join.type == "m.room.member" and join.membership == "join"
        join.internal.rejected_reason = "test"
        expected_jr = None
    else:
        room.events[good[member_key(ALICE)]].internal.rejected_reason = "test"
        expected_jr = jr2

    resolved = await room.resolve(good, stale)

    expected = {k: v for k, v in good.items() if k != JR_KEY}
    if expected_jr is not None:
        expected[JR_KEY] = expected_jr
    assert resolved == expected


@v2_family
async def test_previously_rejected_candidate_that_now_passes_is_admitted(
    version: RoomVersion,
) -> None:
    """Spec: events rejected against the state at them take part as usual. A topic marked
    rejected but valid against the resolved state still wins by ordering."""
    room = Room(version)
    base = room.genesis({ALICE: 100, BOB: 50}, members=[BOB])
    a, b = base.fork(), base.fork()
    a.topic(ALICE, "A", ts=5_000_000)
    topic_b = b.topic(BOB, "B", ts=5_000_001)
    topic_b.internal.rejected_reason = "auth against the state before it"

    resolved = await room.resolve(a.state, b.state)

    assert resolved == {**base.state, TOPIC_KEY: topic_b.event_id}
