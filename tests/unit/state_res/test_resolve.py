"""State resolution scenarios, run for every room version; expectations differ where v1 and v2
differ. Every assertion compares the whole resolved map, built from exact event IDs."""

from __future__ import annotations

import hashlib

import pytest

from homeserver.room_versions import V1, RoomVersion, StateResAlgorithm
from tests.unit.state_res.builder import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    JR_KEY,
    PL_KEY,
    TOPIC_KEY,
    Room,
    member_key,
)

versions = pytest.mark.parametrize("version", ALL_VERSIONS, ids=lambda v: f"v{v.identifier}")


def is_v1(version: RoomVersion) -> bool:
    return version.state_res is StateResAlgorithm.V1


# --- no conflict ----------------------------------------------------------------------------


@versions
async def test_no_state_sets_resolve_to_nothing(version: RoomVersion) -> None:
    room = Room(version)
    assert await room.resolve() == {}
    assert room.fetch_calls == []


@versions
async def test_identical_state_sets_resolve_to_themselves_without_fetching(
    version: RoomVersion,
) -> None:
    room = Room(version)
    base = room.genesis(members=[BOB])
    a, b = base.fork(), base.fork()
    a.message(ALICE)
    b.message(BOB)
    assert a.state == b.state
    assert await room.resolve(a.state, b.state) == base.state
    assert await room.resolve(base.state) == base.state
    assert room.fetch_calls == []


# --- a key that only one state has -----------------------------------------------------------


@versions
async def test_key_missing_from_one_state_is_conflicted_from_v2(version: RoomVersion) -> None:
    """Bob sets the topic while, concurrently, Alice kicks him. v1 keeps the topic (the key is
    in one state only, so unconflicted); v2 replays it after the kick and drops it."""
    room = Room(version)
    base = room.genesis({ALICE: 100, BOB: 50}, members=[BOB])
    a, b = base.fork(), base.fork()
    topic = a.topic(BOB, "Bob's topic")
    kick = b.member(ALICE, "leave", BOB)

    resolved = await room.resolve(a.state, b.state)

    expected = {**base.state, member_key(BOB): kick.event_id}
    if is_v1(version):
        expected[TOPIC_KEY] = topic.event_id
    assert resolved == expected


# --- power-level fight ---------------------------------------------------------------------------


@pytest.mark.parametrize("pl0_unfetchable", [False, True], ids=["", "pl0-missing"])
@versions
async def test_power_level_fight_higher_sender_is_ordered_first(
    version: RoomVersion, pl0_unfetchable: bool
) -> None:
    """Alice (100) demotes Bob (50 -> 0) while Bob demotes Carol (25 -> 0) and then sets the
    topic. Alice's PL event sorts first (higher sender PL), so Bob's, checked after it, fails:
    Alice's wins everywhere. Bob's topic survives only in v1 (its key is unconflicted there).

    With the PL event both cite unfetchable, the result is the same: without it Alice is the
    creator (100) and Bob has 0."""
    room = Room(version)
    users = {ALICE: 100, BOB: 50, CAROL: 25}
    base = room.genesis(users, members=[BOB, CAROL])
    if pl0_unfetchable:
        room.hidden.add(base.state[PL_KEY])
    a, b = base.fork(), base.fork()
    pl_alice = a.put(PL_KEY[0], ALICE, room.power_levels({**users, BOB: 0}))
    pl_bob = b.put(PL_KEY[0], BOB, room.power_levels({**users, CAROL: 0}))
    topic_bob = b.topic(BOB, "Bob was here")

    resolved = await room.resolve(a.state, b.state)

    expected = {**base.state, PL_KEY: pl_alice.event_id}
    if is_v1(version):
        expected[TOPIC_KEY] = topic_bob.event_id
    assert resolved == expected
    assert resolved[PL_KEY] != pl_bob.event_id


@versions
async def test_power_level_fight_is_symmetric_in_the_order_of_state_sets(
    version: RoomVersion,
) -> None:
    room = Room(version)
    users = {ALICE: 100, BOB: 50, CAROL: 25}
    base = room.genesis(users, members=[BOB, CAROL])
    a, b = base.fork(), base.fork()
    pl_alice = a.put(PL_KEY[0], ALICE, room.power_levels({**users, BOB: 0}))
    b.put(PL_KEY[0], BOB, room.power_levels({**users, CAROL: 0}))

    forward = await room.resolve(a.state, b.state)
    backward = await room.resolve(b.state, a.state)
    assert forward == backward == {**base.state, PL_KEY: pl_alice.event_id}


@versions
async def test_auth_difference_replays_intermediate_power_events(version: RoomVersion) -> None:
    """Fork A: Alice promotes Bob (PL1), then Bob promotes Carol (PL2). Fork B, from before
    PL1: Alice sets the topic. Only PL0/PL2 are conflicted; PL1 comes in through the auth
    difference, so from v2 PL1 is replayed before PL2 and PL2 stands. v1 checks PL2 against
    PL0 alone, where Bob is 0, and resets to PL0."""
    room = Room(version)
    users = {ALICE: 100}
    base = room.genesis(users, members=[BOB, CAROL])
    a, b = base.fork(), base.fork()
    a.put(PL_KEY[0], ALICE, room.power_levels({**users, BOB: 50}))
    pl2 = a.put(PL_KEY[0], BOB, room.power_levels({**users, BOB: 50, CAROL: 50}))
    topic = b.topic(ALICE, "Alice's topic")

    resolved = await room.resolve(a.state, b.state)

    winner = base.state[PL_KEY] if is_v1(version) else pl2.event_id
    assert resolved == {**base.state, PL_KEY: winner, TOPIC_KEY: topic.event_id}


# --- join rules racing a join -----------------------------------------------------------------


@versions
async def test_join_rules_change_racing_a_join(version: RoomVersion) -> None:
    """Alice makes the room invite-only while Carol joins it as a public room. From v2 the
    join-rules change (a power event) is applied first and Carol's join, replayed after it, is
    refused. v1 keeps the join: Carol's key is in one state only, so never checked."""
    room = Room(version)
    base = room.genesis()
    a, b = base.fork(), base.fork()
    invite_only = a.put(JR_KEY[0], ALICE, {"join_rule": "invite"})
    join = b.member(CAROL, "join")

    resolved = await room.resolve(a.state, b.state)

    expected = {**base.state, JR_KEY: invite_only.event_id}
    if is_v1(version):
        expected[member_key(CAROL)] = join.event_id
    assert resolved == expected


@versions
async def test_join_after_invite_survives_join_rules_change(version: RoomVersion) -> None:
    """Carol was invited before the room went invite-only, so her join passes even though it
    is ordered after the join-rules change."""
    room = Room(version)
    base = room.genesis()
    invite = base.member(ALICE, "invite", CAROL)
    a, b = base.fork(), base.fork()
    invite_only = a.put(JR_KEY[0], ALICE, {"join_rule": "invite"})
    join = b.member(CAROL, "join")
    assert invite.event_id != join.event_id

    resolved = await room.resolve(a.state, b.state)

    assert resolved == {
        **base.state,
        JR_KEY: invite_only.event_id,
        member_key(CAROL): join.event_id,
    }


# --- ban racing a join ----------------------------------------------------------------------


@versions
async def test_ban_racing_a_join(version: RoomVersion) -> None:
    """Alice bans Carol while Carol joins: the ban wins in every version."""
    room = Room(version)
    base = room.genesis()
    a, b = base.fork(), base.fork()
    ban = a.member(ALICE, "ban", CAROL)
    b.member(CAROL, "join")

    resolved = await room.resolve(a.state, b.state)

    assert resolved == {**base.state, member_key(CAROL): ban.event_id}


@versions
async def test_ban_racing_the_banned_users_state_change(version: RoomVersion) -> None:
    """Carol (at the topic level) sets the topic while Alice bans her. From v2 the topic,
    replayed after the ban, is refused; v1 keeps it (its key is unconflicted)."""
    room = Room(version)
    base = room.genesis({ALICE: 100, CAROL: 10}, members=[CAROL])
    base.put(
        PL_KEY[0], ALICE, room.power_levels({ALICE: 100, CAROL: 10}, events={"m.room.topic": 10})
    )
    a, b = base.fork(), base.fork()
    ban = a.member(ALICE, "ban", CAROL)
    topic = b.topic(CAROL, "Carol's topic")

    resolved = await room.resolve(a.state, b.state)

    expected = {**base.state, member_key(CAROL): ban.event_id}
    if is_v1(version):
        expected[TOPIC_KEY] = topic.event_id
    assert resolved == expected


# --- topic conflict: mainline ordering ------------------------------------------------------------


@versions
async def test_topic_conflict_resolved_by_mainline(version: RoomVersion) -> None:
    """Fork A: Alice changes the PLs (PL1), then Bob sets topic A citing PL1. Fork B: Bob sends
    two messages, then topic B citing PL0, with a *later* timestamp and greater depth.

    v2: topic B's mainline position (PL0, 1) is greater than topic A's (PL1, 0), so B sorts
    first and A, applied last, wins despite its earlier timestamp. v1 picks the greatest depth:
    topic B."""
    room = Room(version)
    users = {ALICE: 100, BOB: 50}
    base = room.genesis(users, members=[BOB])
    a, b = base.fork(), base.fork()
    pl1 = a.put(PL_KEY[0], ALICE, room.power_levels({**users, CAROL: 10}))
    topic_a = a.topic(BOB, "A", ts=5_000_000)
    b.message(BOB)
    b.message(BOB)
    topic_b = b.topic(BOB, "B", ts=5_000_001)
    assert topic_b.depth > topic_a.depth

    resolved = await room.resolve(a.state, b.state)

    winner = topic_b if is_v1(version) else topic_a
    assert resolved == {**base.state, PL_KEY: pl1.event_id, TOPIC_KEY: winner.event_id}


@pytest.mark.parametrize("a_first", [True, False], ids=["a-earlier", "b-earlier"])
@pytest.mark.parametrize(
    "version", [v for v in ALL_VERSIONS if v is not V1], ids=lambda v: f"v{v.identifier}"
)
async def test_topic_conflict_same_mainline_position_later_timestamp_wins(
    version: RoomVersion, a_first: bool
) -> None:
    room = Room(version)
    base = room.genesis({ALICE: 100, BOB: 50}, members=[BOB])
    a, b = base.fork(), base.fork()
    topic_a = a.topic(ALICE, "A", ts=5_000_000 if a_first else 5_000_001)
    topic_b = b.topic(BOB, "B", ts=5_000_001 if a_first else 5_000_000)

    resolved = await room.resolve(a.state, b.state)

    winner = topic_b if a_first else topic_a
    assert resolved == {**base.state, TOPIC_KEY: winner.event_id}


# --- events that cannot be fetched ---------------------------------------------------------------


@versions
async def test_unfetchable_candidate_is_skipped(version: RoomVersion) -> None:
    """Same forks as the mainline test; the candidate that would win cannot be fetched, so the
    other one is the resolved topic."""
    room = Room(version)
    users = {ALICE: 100, BOB: 50}
    base = room.genesis(users, members=[BOB])
    a, b = base.fork(), base.fork()
    pl1 = a.put(PL_KEY[0], ALICE, room.power_levels({**users, CAROL: 10}))
    topic_a = a.topic(BOB, "A", ts=5_000_000)
    b.message(BOB)
    b.message(BOB)
    topic_b = b.topic(BOB, "B", ts=5_000_001)
    natural_winner, other = (topic_b, topic_a) if is_v1(version) else (topic_a, topic_b)
    room.hidden.add(natural_winner.event_id)

    resolved = await room.resolve(a.state, b.state)

    assert resolved == {**base.state, PL_KEY: pl1.event_id, TOPIC_KEY: other.event_id}


# --- batching ------------------------------------------------------------------------------


@versions
async def test_fetches_are_batched_by_auth_chain_level(version: RoomVersion) -> None:
    """30 members, a conflict: every event is asked for at most once, and the number of fetch
    calls follows the depth of the auth DAG, not the number of events."""
    room = Room(version)
    members = [f"@user{i}:example.org" for i in range(30)]
    base = room.genesis({ALICE: 100, BOB: 50}, members=[BOB, *members])
    a, b = base.fork(), base.fork()
    topic_a = a.topic(ALICE, "A", ts=5_000_000)
    topic_b = b.topic(BOB, "B", ts=5_000_001)

    resolved = await room.resolve(a.state, b.state)

    winner = topic_b
    if is_v1(version):  # same depth: the smallest sha1(event_id) is tried first, and passes
        winner = min(
            (topic_a, topic_b), key=lambda e: hashlib.sha1(e.event_id.encode()).hexdigest()
        )
    assert resolved == {**base.state, TOPIC_KEY: winner.event_id}
    asked = [i for call in room.fetch_calls for i in call]
    assert len(asked) == len(set(asked)), "an event was fetched twice"
    assert 1 <= len(room.fetch_calls) <= 6
