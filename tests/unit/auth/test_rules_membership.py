"""m.room.member: join, invite, leave (kick/unban), ban, knock, restricted joins, per version."""

from __future__ import annotations

import pytest

from tests.unit.auth.room import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    CREATOR,
    RITA,
    Room,
    assert_outcome,
    cases,
    member,
    run_case,
    versions_where,
)

PRE_KNOCK = versions_where(lambda v: not v.knock_join_rule)
KNOCK = versions_where(lambda v: v.knock_join_rule)
PRE_RESTRICTED = versions_where(lambda v: not v.restricted_join_rule)
RESTRICTED = versions_where(lambda v: v.restricted_join_rule)
PRE_KNOCK_RESTRICTED = versions_where(lambda v: not v.knock_restricted_join_rule)
KNOCK_RESTRICTED = versions_where(lambda v: v.knock_restricted_join_rule)

PUBLIC = {"join_rule": "public"}
MOD = {"users": {ALICE: 50}, "members": {ALICE: "join"}}

JOIN_CASES = [
    *cases("public-join", ALL_VERSIONS, PUBLIC, member(BOB, "join"), None),
    *cases("invite-only-join-uninvited", ALL_VERSIONS, {}, member(BOB, "join"), "needs an invite"),
    *cases(
        "invite-only-join-invited",
        ALL_VERSIONS,
        {"members": {BOB: "invite"}},
        member(BOB, "join"),
        None,
    ),
    *cases(
        "rejoin-while-joined", ["1", "12"], {"members": {BOB: "join"}}, member(BOB, "join"), None
    ),
    *cases(
        "banned-join-public",
        ALL_VERSIONS,
        {**PUBLIC, "members": {BOB: "ban"}},
        member(BOB, "join"),
        "banned",
    ),
    *cases(
        "join-for-someone-else",
        ["1", "6", "12"],
        PUBLIC,
        member(ALICE, "join", BOB),
        "sender must be the state_key",
    ),
    *cases(
        "no-join-rules-means-invite",
        ["3", "12"],
        {"join_rule": None},
        member(BOB, "join"),
        "needs an invite",
    ),
    *cases(
        "private-join-rule-refused",
        ["2", "12"],
        {"join_rule": "private", "members": {BOB: "invite"}},
        member(BOB, "join"),
        "does not allow joining",
    ),
    # knock as a join rule: before v7 it is unknown, so even an invited user cannot join.
    *cases(
        "knock-rule-join-invited",
        PRE_KNOCK,
        {"join_rule": "knock", "members": {BOB: "invite"}},
        member(BOB, "join"),
        "does not allow joining",
    ),
    *cases(
        "knock-rule-join-invited",
        KNOCK,
        {"join_rule": "knock", "members": {BOB: "invite"}},
        member(BOB, "join"),
        None,
    ),
    *cases(
        "knock-rule-join-uninvited",
        KNOCK,
        {"join_rule": "knock"},
        member(BOB, "join"),
        "needs an invite",
    ),
]


@pytest.mark.parametrize(("version", "room", "make", "expect"), JOIN_CASES)
def test_join(version, room, make, expect):
    run_case(version, room, make, expect)


def _first_join(version: str, user: str, creator_field: str | None, expect: str | None) -> None:
    content = {"creator": creator_field} if creator_field is not None else {}
    room = Room(version, bare=True, create_content=content)
    event = room.member(user, "join")
    assert event.prev_event_ids() == (room.create.event_id,)
    assert_outcome(room, event, expect)


@pytest.mark.parametrize(
    ("version", "user", "creator_field", "expect"),
    [
        *[
            pytest.param(v, CREATOR, None, None, id=f"creator-first-join-v{v}")
            for v in ALL_VERSIONS
        ],
        # v1-v10: the creator is content.creator, whoever sent the create event.
        pytest.param("10", ALICE, ALICE, None, id="content-creator-first-join-v10"),
        pytest.param("10", CREATOR, ALICE, "needs an invite", id="create-sender-not-creator-v10"),
        pytest.param("1", ALICE, ALICE, None, id="content-creator-first-join-v1"),
        # v11+: content.creator means nothing; the create event's sender is the creator.
        pytest.param("11", ALICE, ALICE, "needs an invite", id="content-creator-ignored-v11"),
        pytest.param("11", CREATOR, ALICE, None, id="create-sender-first-join-v11"),
        pytest.param("12", BOB, None, "needs an invite", id="non-creator-first-join-v12"),
        pytest.param("5", BOB, None, "needs an invite", id="non-creator-first-join-v5"),
    ],
)
def test_first_join_shortcut(version, user, creator_field, expect):
    _first_join(version, user, creator_field, expect)


def test_first_join_shortcut_is_not_for_additional_creators_v12():
    room = Room("12", bare=True, create_content={"additional_creators": [ALICE]})
    assert_outcome(room, room.member(ALICE, "join"), "needs an invite")


def test_first_join_shortcut_needs_create_as_only_prev_event():
    room = Room("11", bare=True)
    other = room.put(room.event("m.room.topic", CREATOR, {"topic": "x"}, state_key=""))
    event = room.member(CREATOR, "join")
    assert event.prev_event_ids() == (other.event_id,)
    assert_outcome(room, event, "needs an invite")


INVITE_CASES = [
    *cases("invite-by-member", ALL_VERSIONS, {}, member(CREATOR, "invite", BOB), None),
    *cases(
        "invite-by-non-member",
        ["1", "6", "10", "12"],
        {"members": {ALICE: "invite"}},
        member(ALICE, "invite", BOB),
        "invite: sender is not joined",
    ),
    *cases(
        "invite-joined-target",
        ["1", "12"],
        {"members": {BOB: "join"}},
        member(CREATOR, "invite", BOB),
        "already join",
    ),
    *cases(
        "invite-banned-target",
        ["1", "12"],
        {"members": {BOB: "ban"}},
        member(CREATOR, "invite", BOB),
        "already ban",
    ),
]


@pytest.mark.parametrize(("version", "room", "make", "expect"), INVITE_CASES)
def test_invite(version, room, make, expect):
    run_case(version, room, make, expect)


@pytest.mark.parametrize("version", ["1", "6", "10", "12"])
@pytest.mark.parametrize(("level", "expect"), [(10, "below the invite level"), (20, None)])
def test_invite_level(version, level, expect):
    room = Room(
        version,
        members={ALICE: "join"},
        power_levels={
            "invite": 20,
            "users": {ALICE: level, **({} if version == "12" else {CREATOR: 100})},
        },
    )
    assert_outcome(room, room.member(ALICE, "invite", BOB), expect)


LEAVE_CASES = [
    *cases("leave-from-join", ALL_VERSIONS, {"members": {BOB: "join"}}, member(BOB, "leave"), None),
    *cases(
        "reject-invite", ["1", "7", "12"], {"members": {BOB: "invite"}}, member(BOB, "leave"), None
    ),
    *cases(
        "leave-while-banned",
        ["1", "12"],
        {"members": {BOB: "ban"}},
        member(BOB, "leave"),
        "cannot leave from membership 'ban'",
    ),
    *cases(
        "leave-never-joined",
        ["1", "12"],
        {},
        member(BOB, "leave"),
        "cannot leave from membership 'leave'",
    ),
    # Withdrawing a knock: a leave from "knock" only exists from v7.
    *cases(
        "withdraw-knock",
        ["6"],
        {"members": {BOB: "knock"}},
        member(BOB, "leave"),
        "cannot leave from membership 'knock'",
    ),
    *cases("withdraw-knock", ["7", "12"], {"members": {BOB: "knock"}}, member(BOB, "leave"), None),
    *cases(
        "kick-by-moderator",
        ALL_VERSIONS,
        {**MOD, "members": {ALICE: "join", BOB: "join"}},
        member(ALICE, "leave", BOB),
        None,
    ),
    *cases(
        "kick-without-level",
        ["1", "12"],
        {"members": {ALICE: "join", BOB: "join"}},
        member(ALICE, "leave", BOB),
        "kicking needs the kick level",
    ),
    *cases(
        "kick-equal-level",
        ["1", "11"],
        {"users": {ALICE: 50, BOB: 50}, "members": {ALICE: "join", BOB: "join"}},
        member(ALICE, "leave", BOB),
        "kicking needs the kick level",
    ),
    *cases(
        "kick-by-non-member",
        ["1", "12"],
        {"users": {ALICE: 50}, "members": {BOB: "join"}},
        member(ALICE, "leave", BOB),
        "leave: sender is not joined",
    ),
    *cases(
        "kick-higher-target",
        ["3"],
        {"users": {ALICE: 50}, "members": {ALICE: "join"}},
        member(ALICE, "leave", CREATOR),
        "kicking needs the kick level",
    ),
    # Unbanning takes the ban level as well as the kick level.
    *cases(
        "unban-by-moderator",
        ["1", "12"],
        {**MOD, "members": {ALICE: "join", BOB: "ban"}},
        member(ALICE, "leave", BOB),
        None,
    ),
]


@pytest.mark.parametrize(("version", "room", "make", "expect"), LEAVE_CASES)
def test_leave(version, room, make, expect):
    run_case(version, room, make, expect)


@pytest.mark.parametrize("version", ["1", "10", "12"])
@pytest.mark.parametrize(
    ("ban_level", "expect"), [(75, "unbanning needs the ban level"), (50, None)]
)
def test_unban_needs_ban_level(version, ban_level, expect):
    users = {ALICE: 50} if version == "12" else {CREATOR: 100, ALICE: 50}
    room = Room(
        version,
        power_levels={"ban": ban_level, "kick": 50, "users": users},
        members={ALICE: "join", BOB: "ban"},
    )
    assert_outcome(room, room.member(ALICE, "leave", BOB), expect)


BAN_CASES = [
    *cases(
        "ban-by-moderator",
        ALL_VERSIONS,
        {**MOD, "members": {ALICE: "join", BOB: "join"}},
        member(ALICE, "ban", BOB),
        None,
    ),
    *cases("ban-non-member", ["2", "12"], MOD, member(ALICE, "ban", BOB), None),
    *cases(
        "ban-without-level",
        ["1", "12"],
        {"members": {ALICE: "join", BOB: "join"}},
        member(ALICE, "ban", BOB),
        "ban: needs the ban level",
    ),
    *cases(
        "ban-by-non-member",
        ["1", "12"],
        {"users": {ALICE: 50}},
        member(ALICE, "ban", BOB),
        "ban: sender is not joined",
    ),
    *cases(
        "ban-equal-level",
        ["4", "11"],
        {"users": {ALICE: 50, BOB: 50}, "members": {ALICE: "join", BOB: "join"}},
        member(ALICE, "ban", BOB),
        "ban: needs the ban level",
    ),
]


@pytest.mark.parametrize(("version", "room", "make", "expect"), BAN_CASES)
def test_ban(version, room, make, expect):
    run_case(version, room, make, expect)


KNOCK_CASES = [
    *cases(
        "knock",
        PRE_KNOCK,
        {"join_rule": "knock"},
        member(BOB, "knock"),
        "unknown membership 'knock'",
    ),
    *cases("knock", KNOCK, {"join_rule": "knock"}, member(BOB, "knock"), None),
    *cases(
        "knock-on-invite-room", ["7", "12"], {}, member(BOB, "knock"), "does not allow knocking"
    ),
    *cases("knock-on-public-room", ["7"], PUBLIC, member(BOB, "knock"), "does not allow knocking"),
    *cases(
        "knock-restricted",
        ["7", "8", "9"],
        {"join_rule": "knock_restricted"},
        member(BOB, "knock"),
        "does not allow knocking",
    ),
    *cases(
        "knock-restricted",
        KNOCK_RESTRICTED,
        {"join_rule": "knock_restricted"},
        member(BOB, "knock"),
        None,
    ),
    *cases(
        "knock-for-other",
        ["7", "12"],
        {"join_rule": "knock", "members": {ALICE: "join"}},
        member(ALICE, "knock", BOB),
        "knock: sender must be the state_key",
    ),
    *cases(
        "knock-while-banned",
        ["7", "12"],
        {"join_rule": "knock", "members": {BOB: "ban"}},
        member(BOB, "knock"),
        "already ban",
    ),
    *cases(
        "knock-while-invited",
        ["7", "12"],
        {"join_rule": "knock", "members": {BOB: "invite"}},
        member(BOB, "knock"),
        "already invite",
    ),
    *cases(
        "knock-while-joined",
        ["8"],
        {"join_rule": "knock", "members": {BOB: "join"}},
        member(BOB, "knock"),
        "already join",
    ),
    *cases(
        "knock-after-leave",
        ["7", "12"],
        {"join_rule": "knock", "members": {BOB: "leave"}},
        member(BOB, "knock"),
        None,
    ),
]


@pytest.mark.parametrize(("version", "room", "make", "expect"), KNOCK_CASES)
def test_knock(version, room, make, expect):
    run_case(version, room, make, expect)


VIA = "join_authorised_via_users_server"
RESTRICTED_ROOM = {"join_rule": "restricted", "users": {ALICE: 0}, "members": {ALICE: "join"}}
KR_ROOM = {**RESTRICTED_ROOM, "join_rule": "knock_restricted"}

RESTRICTED_CASES = [
    # Before v8 "restricted" is an unknown join rule.
    *cases(
        "restricted-join-via",
        PRE_RESTRICTED,
        RESTRICTED_ROOM,
        member(BOB, "join", **{VIA: ALICE}),
        "does not allow joining",
    ),
    *cases(
        "restricted-join-via",
        RESTRICTED,
        RESTRICTED_ROOM,
        member(BOB, "join", **{VIA: ALICE}),
        None,
    ),
    *cases(
        "restricted-join-no-via",
        ["8", "12"],
        RESTRICTED_ROOM,
        member(BOB, "join"),
        "needs join_authorised_via_users_server",
    ),
    *cases(
        "restricted-join-invited",
        ["8", "12"],
        {**RESTRICTED_ROOM, "members": {BOB: "invite"}},
        member(BOB, "join"),
        None,
    ),
    *cases(
        "restricted-join-via-non-member",
        ["8", "10", "12"],
        RESTRICTED_ROOM,
        member(BOB, "join", **{VIA: CAROL}),
        "user is not joined",
    ),
    *cases(
        "restricted-join-via-below-invite",
        ["9", "12"],
        {**RESTRICTED_ROOM, "power_levels": {"invite": 10}},
        member(BOB, "join", **{VIA: ALICE}),
        "below the invite level",
    ),
    # The authorising server must have signed the join.
    *cases(
        "restricted-join-via-unsigned",
        ["8", "12"],
        {**RESTRICTED_ROOM, "members": {RITA: "join"}},
        member(BOB, "join", **{VIA: RITA}),
        "not signed by that user's server",
    ),
    *cases(
        "knock-restricted-join-via",
        PRE_KNOCK_RESTRICTED,
        KR_ROOM,
        member(BOB, "join", **{VIA: ALICE}),
        "does not allow joining",
    ),
    *cases(
        "knock-restricted-join-via",
        KNOCK_RESTRICTED,
        KR_ROOM,
        member(BOB, "join", **{VIA: ALICE}),
        None,
    ),
    *cases(
        "knock-restricted-join-no-via",
        ["10", "12"],
        KR_ROOM,
        member(BOB, "join"),
        "needs join_authorised_via_users_server",
    ),
]


@pytest.mark.parametrize(("version", "room", "make", "expect"), RESTRICTED_CASES)
def test_restricted_join(version, room, make, expect):
    run_case(version, room, make, expect)


@pytest.mark.parametrize("version", ["8", "12"])
def test_restricted_join_via_remote_user_signed_by_their_server(version):
    room = Room(version, **{**RESTRICTED_ROOM, "members": {RITA: "join"}})
    event = room.member(BOB, "join", **{VIA: RITA})
    event.pdu["signatures"]["remote.org"] = {"ed25519:a": "sig"}
    assert_outcome(room, event, None)


@pytest.mark.parametrize("version", ["1", "7", "12"])
@pytest.mark.parametrize(
    ("content", "expect"),
    [
        ({"membership": "dance"}, "unknown membership 'dance'"),
        ({}, "needs a state_key and content.membership"),
    ],
)
def test_bad_membership(version, content, expect):
    room = Room(version, join_rule="public")
    assert_outcome(room, room.event("m.room.member", BOB, content, state_key=BOB), expect)


def test_member_without_state_key_is_refused():
    room = Room("10", join_rule="public")
    event = room.event("m.room.member", BOB, {"membership": "join"})
    assert_outcome(room, event, "needs a state_key")
