"""Power-level values per version, defaults, users' levels (v12 creators infinite), and the
rules on changing m.room.power_levels."""

from __future__ import annotations

import math

import pytest

from homeserver.auth.power_levels import (
    INFINITE_POWER_LEVEL,
    named_power_level,
    notification_power_level,
    parse_power_level,
    required_power_level,
    room_creators,
    user_power_level,
)
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from tests.unit.auth.room import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    CREATOR,
    RITA,
    Room,
    assert_outcome,
    ev,
    run_case,
)

OK_ALL = [(50, 50), (0, 0), (-10, -10), (2**53 - 1, 2**53 - 1)]
PARSE_CASES = [
    *[(v, value, want) for v in ("1", "6", "10", "12") for value, want in OK_ALL],
    # v1-v5: strings and floats (truncated toward zero); no infinities or NaN.
    *[
        ("1", value, want)
        for value, want in [
            ("50", 50),
            (" +0100 ", 100),
            ("-5", -5),
            ("0050", 50),
            ("\t7\n", 7),
            (50.9, 50),
            (-1.5, -1),
            (1e3, 1000),
            (50.0, 50),
            (math.inf, None),
            (-math.inf, None),
            (math.nan, None),
            ("5.5", None),
            ("1_000", None),
            ("\u0663", None),
            ("", None),
            ("+-1", None),
            ("1e3", None),
            ("fifty", None),
            (True, None),
            (None, None),
            ([50], None),
        ]
    ],
    ("5", 50.57, 50),
    ("5", "  -0  ", 0),
    # v6-v9: strings, but no floats.
    ("6", 50.5, None),
    ("6", 50.0, None),
    ("6", "50", 50),
    ("9", " +0100 ", 100),
    ("9", False, None),
    # v10+: integers only.
    ("10", "50", None),
    ("10", 50.0, None),
    ("11", " 1", None),
    ("12", "100", None),
    ("12", True, None),
]


@pytest.mark.parametrize(
    ("version", "value", "want"), PARSE_CASES, ids=[f"v{c[0]}-{c[1]!r}" for c in PARSE_CASES]
)
def test_parse_power_level(version, value, want):
    assert parse_power_level(KNOWN_ROOM_VERSIONS[version], value) == want


def test_huge_integer_string_is_not_a_level():
    assert parse_power_level(KNOWN_ROOM_VERSIONS["1"], "9" * 10_000) is None


@pytest.mark.parametrize("version", ["1", "10", "12"])
def test_defaults_without_power_levels_event(version):
    room_version = KNOWN_ROOM_VERSIONS[version]
    assert {
        n: named_power_level(room_version, n, None)
        for n in (
            "invite",
            "kick",
            "ban",
            "redact",
            "state_default",
            "events_default",
            "users_default",
        )
    } == {
        "invite": 0,
        "kick": 50,
        "ban": 50,
        "redact": 50,
        "state_default": 50,
        "events_default": 0,
        "users_default": 0,
    }
    assert notification_power_level(room_version, "room", None) == 50
    assert required_power_level(room_version, "m.room.name", True, None) == 50
    assert required_power_level(room_version, "m.room.message", False, None) == 0


def test_levels_read_from_power_levels_event():
    room = Room(
        "9",
        power_levels={
            "kick": "20",
            "events": {"m.room.message": 5},
            "notifications": {"room": 7},
            "state_default": 40,
        },
    )
    version, pl = room.version, room.state[("m.room.power_levels", "")]
    assert named_power_level(version, "kick", pl) == 20
    assert named_power_level(version, "ban", pl) == 50
    assert required_power_level(version, "m.room.message", False, pl) == 5
    assert required_power_level(version, "m.room.topic", True, pl) == 40
    assert notification_power_level(version, "room", pl) == 7


@pytest.mark.parametrize(
    ("version", "create_content", "expected"),
    [
        ("1", {}, {CREATOR}),
        ("10", {"creator": ALICE}, {ALICE}),
        ("11", {"creator": ALICE}, {CREATOR}),
        ("11", {"additional_creators": [ALICE]}, {CREATOR}),
        ("12", {}, {CREATOR}),
        ("12", {"additional_creators": [ALICE, BOB]}, {CREATOR, ALICE, BOB}),
    ],
)
def test_room_creators(version, create_content, expected):
    room = Room(version, bare=True, create_content=create_content)
    assert room_creators(room.version, room.create) == expected


UPL_CASES = [
    # (version, PL content or None, create content, user, expected)
    ("1", None, {}, CREATOR, 100),
    ("1", None, {}, ALICE, 0),
    ("10", None, {"creator": ALICE}, ALICE, 100),
    ("10", None, {"creator": ALICE}, CREATOR, 0),
    ("11", None, {}, CREATOR, 100),
    ("11", {"users": {ALICE: 30}}, {}, CREATOR, 0),
    ("11", {"users": {ALICE: 30}, "users_default": 5}, {}, ALICE, 30),
    ("11", {"users": {ALICE: 30}, "users_default": 5}, {}, BOB, 5),
    ("9", {"users": {ALICE: " 30 "}}, {}, ALICE, 30),
    ("10", {"users": {ALICE: "30"}, "users_default": 1}, {}, ALICE, 1),
    ("12", None, {}, CREATOR, INFINITE_POWER_LEVEL),
    ("12", None, {}, ALICE, 0),
    ("12", {"users": {ALICE: 100}}, {}, CREATOR, INFINITE_POWER_LEVEL),
    ("12", {"users": {ALICE: 100}}, {}, ALICE, 100),
    ("12", None, {"additional_creators": [BOB]}, BOB, INFINITE_POWER_LEVEL),
    ("12", {"users_default": 10}, {"additional_creators": [BOB]}, CAROL, 10),
]


@pytest.mark.parametrize(
    ("version", "pl", "create_content", "user", "expected"),
    UPL_CASES,
    ids=[f"v{c[0]}-{i}" for i, c in enumerate(UPL_CASES)],
)
def test_user_power_level(version, pl, create_content, user, expected):
    room = Room(version, bare=True, create_content=create_content)
    pl_event = None
    if pl is not None:
        pl_event = room.event("m.room.power_levels", CREATOR, pl, state_key="")
    assert user_power_level(room.version, user, room.create, pl_event) == expected


def test_infinity_outranks_every_integer_and_ties_with_itself():
    assert INFINITE_POWER_LEVEL > 2**63
    assert not INFINITE_POWER_LEVEL < INFINITE_POWER_LEVEL
    assert sorted([INFINITE_POWER_LEVEL, 100, -5], key=lambda p: -p) == [
        INFINITE_POWER_LEVEL,
        100,
        -5,
    ]


# --- changing m.room.power_levels (ALICE: 50, a moderator) ---


def _pl(version: str, **content):
    users = {ALICE: 50, BOB: 0, **content.pop("users", {})}
    if version != "12":
        users = {CREATOR: 100, **users}
    return {"users": users, **content}


def pl_case(name, versions, old, new, expect, sender=ALICE):
    """Cases where ``sender`` replaces PL content ``old`` by ``new`` (both via :func:`_pl`)."""
    return [
        pytest.param(
            v,
            {"power_levels": _pl(v, **old), "members": {ALICE: "join", BOB: "join"}},
            ev("m.room.power_levels", sender, _pl(v, **new), ""),
            expect,
            id=f"{name}-v{v}-{'ok' if expect is None else 'refused'}",
        )
        for v in versions
    ]


PL_CASES = [
    *pl_case("no-change", ALL_VERSIONS, {}, {}, None),
    *pl_case("lower-kick", ["1", "12"], {}, {"kick": 25}, None),
    *pl_case("raise-kick-above-self", ["1", "12"], {}, {"kick": 75}, "cannot change 'kick'"),
    *pl_case(
        "lower-kick-from-above-self",
        ["3", "12"],
        {"kick": 75},
        {"kick": 10},
        "cannot change 'kick'",
    ),
    *pl_case("remove-ban-above-self", ["1", "12"], {"ban": 75}, {}, "cannot change 'ban'"),
    *pl_case("add-redact-at-self", ["1", "12"], {}, {"redact": 50}, None),
    *pl_case("same-value-as-string", ["1", "9"], {"kick": 75}, {"kick": "75"}, None),
    *pl_case(
        "raise-event-above-self",
        ["1", "12"],
        {},
        {"events": {"m.room.name": 75}},
        "cannot change events['m.room.name']",
    ),
    *pl_case("set-event-at-self", ["1", "12"], {}, {"events": {"m.room.name": 50}}, None),
    *pl_case(
        "change-event-from-above-self",
        ["1", "12"],
        {"events": {"m.room.name": 75}},
        {"events": {"m.room.name": 0}},
        "cannot change events['m.room.name']",
    ),
    *pl_case(
        "remove-event-above-self",
        ["2"],
        {"events": {"m.room.name": 75}},
        {},
        "cannot change events['m.room.name']",
    ),
    # notifications joined the checked fields in v6.
    *pl_case(
        "lower-notifications-from-above-self",
        ["1", "5"],
        {"notifications": {"room": 100}},
        {"notifications": {"room": 0}},
        None,
    ),
    *pl_case(
        "lower-notifications-from-above-self",
        ["6", "12"],
        {"notifications": {"room": 100}},
        {"notifications": {"room": 0}},
        "cannot change notifications['room']",
    ),
    *pl_case(
        "raise-notifications-above-self",
        ["6", "12"],
        {},
        {"notifications": {"room": 60}},
        "cannot change notifications['room']",
    ),
    *pl_case("promote-to-self", ["1", "12"], {}, {"users": {BOB: 50}}, None),
    *pl_case("promote-above-self", ["1", "12"], {}, {"users": {BOB: 51}}, "cannot raise"),
    *pl_case("promote-self", ["1", "12"], {}, {"users": {ALICE: 51}}, "cannot raise"),
    *pl_case("demote-self", ["1", "12"], {}, {"users": {ALICE: 10}}, None),
    *pl_case(
        "demote-peer",
        ["1", "12"],
        {"users": {BOB: 50}},
        {"users": {BOB: 0}},
        "not below the sender",
    ),
    *pl_case("demote-lower", ["1", "12"], {"users": {BOB: 49}}, {"users": {BOB: 0}}, None),
    *pl_case("add-user", ["4"], {}, {"users": {CAROL: 20}}, None),
    # Value formats of the new event.
    *pl_case("string-user-level", ["1", "9"], {}, {"users": {BOB: "10"}}, None),
    *pl_case(
        "string-user-level",
        ["10", "12"],
        {},
        {"users": {BOB: "10"}},
        "'users' has an invalid power level",
    ),
    *pl_case("float-level", ["1", "5"], {}, {"ban": 40.5}, None),
    *pl_case("float-level", ["6", "9"], {}, {"ban": 40.5}, "'ban' is not a valid power level"),
    *pl_case("string-named-level", ["9"], {}, {"invite": "5"}, None),
    *pl_case("string-named-level", ["10"], {}, {"invite": "5"}, "'invite' is not a valid"),
    *pl_case(
        "string-event-level",
        ["10", "12"],
        {},
        {"events": {"m.room.name": "5"}},
        "'events' has an invalid power level",
    ),
    *pl_case(
        "events-not-object",
        ["1", "10"],
        {},
        {"events": ["m.room.name"]},
        "'events' is not an object",
    ),
    *pl_case(
        "notifications-not-object",
        ["10", "12"],
        {},
        {"notifications": 5},
        "'notifications' is not an object",
    ),
    *pl_case("invalid-user-id", ["1", "10", "12"], {}, {"users": {"alice": 0}}, "invalid user ID"),
    *pl_case("bool-level", ["1", "12"], {}, {"users_default": True}, "'users_default' is not"),
]


@pytest.mark.parametrize(("version", "room", "make", "expect"), PL_CASES)
def test_power_levels_changes(version, room, make, expect):
    run_case(version, room, make, expect)


def _v12_room(**kw):
    return Room(
        "12",
        create_content={"additional_creators": [CAROL]},
        members={ALICE: "join", BOB: "join", CAROL: "join"},
        **kw,
    )


V12_CREATOR_CASES = [
    # v12 creators may not be listed in users, in the first PL event either.
    pytest.param(
        {"power_levels": None},
        CREATOR,
        {"users": {CREATOR: 100}},
        "must not list creators",
        id="first-pl-lists-creator-v12",
    ),
    pytest.param(
        {},
        CREATOR,
        {"users": {CAROL: 100}},
        "must not list creators",
        id="pl-lists-additional-creator-v12",
    ),
    pytest.param(
        {"power_levels": None}, CREATOR, {"users": {ALICE: 2**53 - 1}}, None, id="first-pl-v12"
    ),
    # Infinite power: a creator can set anything and touch anyone.
    pytest.param(
        {"users": {ALICE: 100}},
        CREATOR,
        {"users": {ALICE: 2**53 - 1, BOB: 99}},
        None,
        id="creator-sets-max-v12",
    ),
    pytest.param(
        {"users": {ALICE: 100}},
        CAROL,
        {"users": {ALICE: 0}, "kick": 1000},
        None,
        id="additional-creator-demotes-v12",
    ),
    pytest.param(
        {"users": {ALICE: 100}},
        ALICE,
        {"users": {ALICE: 100, BOB: 101}},
        "cannot raise",
        id="non-creator-limited-v12",
    ),
]


@pytest.mark.parametrize(("room_kwargs", "sender", "content", "expect"), V12_CREATOR_CASES)
def test_v12_creators_and_power_levels(room_kwargs, sender, content, expect):
    room = _v12_room(**room_kwargs)
    assert_outcome(room, room.event("m.room.power_levels", sender, content, state_key=""), expect)


@pytest.mark.parametrize("version", ["1", "11"])
def test_first_power_levels_event_is_free_before_v12(version):
    room = Room(version, power_levels=None)
    content = {"users": {CREATOR: 100, ALICE: 1000}, "kick": 5000}
    assert_outcome(room, room.event("m.room.power_levels", CREATOR, content, state_key=""), None)


def test_creator_cannot_exceed_100_in_v11():
    room = Room("11")
    content = {"users": {CREATOR: 100, ALICE: 2**53 - 1}}
    event = room.event("m.room.power_levels", CREATOR, content, state_key="")
    assert_outcome(room, event, "cannot raise")


KICK_CREATOR_CASES = [
    # (version, PL users, sender, expect): kicking the create event's sender.
    ("11", {CREATOR: 50, ALICE: 100}, ALICE, None),
    ("12", {ALICE: 100}, ALICE, "kicking needs the kick level"),
    ("12", {ALICE: 2**53 - 1}, ALICE, "kicking needs the kick level"),
    ("12", {}, CAROL, "kicking needs the kick level"),  # a creator cannot kick another
]


@pytest.mark.parametrize(("version", "users", "sender", "expect"), KICK_CREATOR_CASES)
def test_kicking_a_creator(version, users, sender, expect):
    kwargs = {"create_content": {"additional_creators": [CAROL]}} if version == "12" else {}
    room = Room(
        version, power_levels={"users": users}, members={ALICE: "join", CAROL: "join"}, **kwargs
    )
    assert_outcome(room, room.member(sender, "leave", CREATOR), expect)


@pytest.mark.parametrize("version", ["12"])
def test_creator_kicks_anyone_v12(version):
    room = Room(version, power_levels={"users": {ALICE: 2**53 - 1}}, members={ALICE: "join"})
    assert_outcome(room, room.member(CREATOR, "ban", ALICE), None)


def test_remote_users_in_pl_are_fine():
    run_case(
        "12",
        {"power_levels": {}},
        ev("m.room.power_levels", CREATOR, {"users": {RITA: 10}}, ""),
        None,
    )
