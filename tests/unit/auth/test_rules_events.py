"""Rules for events other than create and member: aliases (v1-v5), sender joined, third-party
invite events, required power level, '@' state keys, redactions (v1-v2)."""

from __future__ import annotations

import pytest

from tests.unit.auth.room import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CREATOR,
    RITA,
    Room,
    assert_outcome,
    cases,
    ev,
    run_case,
    versions_where,
)

ALIASES_RULE = versions_where(lambda v: v.special_case_aliases_auth)
NO_ALIASES_RULE = versions_where(lambda v: not v.special_case_aliases_auth)
REDACTION_RULE = versions_where(lambda v: v.redaction_auth_rule)
NO_REDACTION_RULE = versions_where(lambda v: not v.redaction_auth_rule)

MSG = {"body": "hi"}
JOINED_BOB = {"members": {BOB: "join"}}

ALIASES_CASES = [
    # v1-v5: a server may publish its aliases without being in the room.
    *cases(
        "aliases-by-non-member",
        ALIASES_RULE,
        {},
        ev("m.room.aliases", RITA, {"aliases": ["#a:remote.org"]}, "remote.org"),
        None,
    ),
    *cases(
        "aliases-by-non-member",
        NO_ALIASES_RULE,
        {},
        ev("m.room.aliases", RITA, {"aliases": ["#a:remote.org"]}, "remote.org"),
        "sender is not joined",
    ),
    *cases(
        "aliases-other-server-key",
        ["1", "5"],
        {"members": {RITA: "join"}},
        ev("m.room.aliases", RITA, {"aliases": []}, "example.org"),
        "state_key must be the sender's server name",
    ),
    *cases(
        "aliases-not-state",
        ["1", "5"],
        {"members": {RITA: "join"}},
        ev("m.room.aliases", RITA, {"aliases": []}),
        "m.room.aliases: needs a state_key",
    ),
    # From v6 it is an ordinary state event: joined, at state_default.
    *cases(
        "aliases-by-member-below-state-default",
        ["6", "12"],
        JOINED_BOB,
        ev("m.room.aliases", BOB, {"aliases": []}, "example.org"),
        "below the required level",
    ),
    *cases(
        "aliases-by-creator",
        ["6", "12"],
        {},
        ev("m.room.aliases", CREATOR, {"aliases": []}, "other.org"),
        None,
    ),
]


@pytest.mark.parametrize(("version", "room", "make", "expect"), ALIASES_CASES)
def test_aliases(version, room, make, expect):
    run_case(version, room, make, expect)


SENDER_CASES = [
    *cases("message-by-member", ALL_VERSIONS, JOINED_BOB, ev("m.room.message", BOB, MSG), None),
    *cases(
        "message-by-non-member",
        ALL_VERSIONS,
        {},
        ev("m.room.message", BOB, MSG),
        "sender is not joined",
    ),
    *cases(
        "message-by-invitee",
        ["1", "12"],
        {"members": {BOB: "invite"}},
        ev("m.room.message", BOB, MSG),
        "sender is not joined",
    ),
    *cases(
        "message-by-knocker",
        ["7", "12"],
        {"join_rule": "knock", "members": {BOB: "knock"}},
        ev("m.room.message", BOB, MSG),
        "sender is not joined",
    ),
    *cases(
        "message-by-former-member",
        ["3"],
        {"members": {BOB: "leave"}},
        ev("m.room.message", BOB, MSG),
        "sender is not joined",
    ),
]


@pytest.mark.parametrize(("version", "room", "make", "expect"), SENDER_CASES)
def test_sender_must_be_joined(version, room, make, expect):
    run_case(version, room, make, expect)


TPI = {"display_name": "b…", "public_key": "AAAA"}
TPI_CASES = [
    *cases(
        "tpi-event-at-invite-level",
        ["1", "12"],
        JOINED_BOB,
        ev("m.room.third_party_invite", BOB, TPI, "tok"),
        None,
    ),
    *cases(
        "tpi-event-below-invite-level",
        ["1", "12"],
        {**JOINED_BOB, "power_levels": {"invite": 10}},
        ev("m.room.third_party_invite", BOB, TPI, "tok"),
        "below the invite level",
    ),
    # The invite level is all it takes: events[...] for the type is not consulted.
    *cases(
        "tpi-event-ignores-events-level",
        ["2", "11"],
        {**JOINED_BOB, "power_levels": {"events": {"m.room.third_party_invite": 100}}},
        ev("m.room.third_party_invite", BOB, TPI, "tok"),
        None,
    ),
    *cases(
        "tpi-event-by-non-member",
        ["1", "12"],
        {},
        ev("m.room.third_party_invite", BOB, TPI, "tok"),
        "sender is not joined",
    ),
]


@pytest.mark.parametrize(("version", "room", "make", "expect"), TPI_CASES)
def test_third_party_invite_event(version, room, make, expect):
    run_case(version, room, make, expect)


REQUIRED_CASES = [
    *cases(
        "state-below-state-default",
        ALL_VERSIONS,
        JOINED_BOB,
        ev("m.room.name", BOB, {"name": "n"}, ""),
        "below the required level 50",
    ),
    *cases(
        "state-by-creator",
        ["1", "11", "12"],
        {},
        ev("m.room.name", CREATOR, {"name": "n"}, ""),
        None,
    ),
    *cases(
        "state-events-override",
        ["1", "12"],
        {**JOINED_BOB, "power_levels": {"events": {"m.room.name": 0}}},
        ev("m.room.name", BOB, {"name": "n"}, ""),
        None,
    ),
    *cases(
        "message-events-default",
        ["1", "12"],
        {**JOINED_BOB, "power_levels": {"events_default": 10}},
        ev("m.room.message", BOB, MSG),
        "below the required level 10",
    ),
    *cases(
        "message-events-override",
        ["1", "12"],
        {**JOINED_BOB, "power_levels": {"events_default": 10, "events": {"m.room.message": 0}}},
        ev("m.room.message", BOB, MSG),
        None,
    ),
    # Without a PL event only the creator reaches the state default.
    *cases(
        "state-without-pl-event",
        ["1", "11", "12"],
        {"power_levels": None, "join_rule": "public", **JOINED_BOB},
        ev("m.room.topic", BOB, {"topic": "t"}, ""),
        "below the required level 50",
    ),
    *cases(
        "state-without-pl-event-by-creator",
        ["1", "11", "12"],
        {"power_levels": None},
        ev("m.room.topic", CREATOR, {"topic": "t"}, ""),
        None,
    ),
    # String levels are read as integers until v10.
    *cases(
        "string-events-level",
        ["1", "9"],
        {**JOINED_BOB, "power_levels": {"events": {"m.room.name": " 0 "}}},
        ev("m.room.name", BOB, {"name": "n"}, ""),
        None,
    ),
    *cases(
        "string-events-level-ignored",
        ["10"],
        {**JOINED_BOB, "power_levels": {"events": {"m.room.name": " 0 "}}},
        ev("m.room.name", BOB, {"name": "n"}, ""),
        "below the required level 50",
    ),
]


@pytest.mark.parametrize(("version", "room", "make", "expect"), REQUIRED_CASES)
def test_required_power_level(version, room, make, expect):
    run_case(version, room, make, expect)


@pytest.mark.parametrize(
    ("version", "sender", "alice_level", "expect"),
    [
        # v12 rooms put m.room.tombstone at 150: only creators (infinite power) may upgrade.
        pytest.param("12", CREATOR, 100, None, id="tombstone-creator-v12"),
        pytest.param("12", ALICE, 100, "below the required level 150", id="tombstone-pl100-v12"),
        pytest.param(
            "11", CREATOR, 100, "below the required level 150", id="tombstone-creator-v11"
        ),
        pytest.param("11", ALICE, 150, None, id="tombstone-pl150-v11"),
    ],
)
def test_tombstone_at_150(version, sender, alice_level, expect):
    users = {ALICE: alice_level} if version == "12" else {CREATOR: 100, ALICE: alice_level}
    room = Room(
        version,
        power_levels={"events": {"m.room.tombstone": 150}, "users": users},
        members={ALICE: "join"},
    )
    event = room.event("m.room.tombstone", sender, {"replacement_room": "!new"}, state_key="")
    assert_outcome(room, event, expect)


STATE_KEY_CASES = [
    *cases(
        "own-user-state-key",
        ["1", "12"],
        {"power_levels": {"state_default": 0}, **JOINED_BOB},
        ev("m.custom", BOB, {}, BOB),
        None,
    ),
    *cases(
        "other-user-state-key",
        ALL_VERSIONS,
        {},
        ev("m.custom", CREATOR, {}, BOB),
        "state_key starting with '@' must be the sender",
    ),
    *cases("non-user-state-key", ["1", "12"], {}, ev("m.custom", CREATOR, {}, "x@y"), None),
]


@pytest.mark.parametrize(("version", "room", "make", "expect"), STATE_KEY_CASES)
def test_user_state_keys(version, room, make, expect):
    run_case(version, room, make, expect)


# v1/v2: a redaction needs the redact level, or a target from the redaction's own server
# (event ID domains). From v3 a redaction is authorised like any message.
REMOTE_EVENT = "$1:remote.org"
LOCAL_EVENT = "$1:example.org"
REDACTION_CASES = [
    *cases(
        "redact-remote-event-no-level",
        REDACTION_RULE,
        JOINED_BOB,
        ev("m.room.redaction", BOB, {}, redacts=REMOTE_EVENT),
        "m.room.redaction",
    ),
    *cases(
        "redact-remote-event-no-level",
        NO_REDACTION_RULE,
        JOINED_BOB,
        ev("m.room.redaction", BOB, {}, redacts=REMOTE_EVENT),
        None,
    ),
    *cases(
        "redact-same-server-event",
        REDACTION_RULE,
        JOINED_BOB,
        ev("m.room.redaction", BOB, {}, redacts=LOCAL_EVENT),
        None,
    ),
    *cases(
        "redact-with-redact-level",
        REDACTION_RULE,
        {"users": {BOB: 50}, **JOINED_BOB},
        ev("m.room.redaction", BOB, {}, redacts=REMOTE_EVENT),
        None,
    ),
    *cases(
        "redact-without-target",
        ["1"],
        JOINED_BOB,
        ev("m.room.redaction", BOB, {}),
        "m.room.redaction",
    ),
    *cases(
        "redact-by-non-member",
        ["2", "3"],
        {},
        ev("m.room.redaction", BOB, {}, redacts=LOCAL_EVENT),
        "sender is not joined",
    ),
]


@pytest.mark.parametrize(("version", "room", "make", "expect"), REDACTION_CASES)
def test_redaction(version, room, make, expect):
    run_case(version, room, make, expect)
