"""Auth-event selection: what an event cites, per event kind and room version."""

from __future__ import annotations

import pytest

from homeserver.auth.selection import auth_types_for_event
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from tests.unit.auth.room import ALICE, BOB, CREATOR

C = ("m.room.create", "")
PL = ("m.room.power_levels", "")
JR = ("m.room.join_rules", "")


def m(user):
    return ("m.room.member", user)


VIA = "join_authorised_via_users_server"
SIGNED = {"third_party_invite": {"signed": {"mxid": BOB, "token": "tok", "signatures": {}}}}

SELECTION_CASES = [
    # (version, type, sender, state_key, content, expected)
    ("1", "m.room.create", CREATOR, "", {}, []),
    ("12", "m.room.create", CREATOR, "", {}, []),
    ("1", "m.room.message", ALICE, None, {}, [C, PL, m(ALICE)]),
    ("11", "m.room.message", ALICE, None, {}, [C, PL, m(ALICE)]),
    ("12", "m.room.message", ALICE, None, {}, [PL, m(ALICE)]),
    ("6", "m.room.name", ALICE, "", {}, [C, PL, m(ALICE)]),
    ("12", "m.room.power_levels", ALICE, "", {}, [PL, m(ALICE)]),
    ("1", "m.room.member", ALICE, ALICE, {"membership": "join"}, [C, PL, m(ALICE), JR]),
    ("12", "m.room.member", ALICE, ALICE, {"membership": "join"}, [PL, m(ALICE), JR]),
    ("1", "m.room.member", ALICE, BOB, {"membership": "invite"}, [C, PL, m(ALICE), m(BOB), JR]),
    ("7", "m.room.member", BOB, BOB, {"membership": "knock"}, [C, PL, m(BOB), JR]),
    ("1", "m.room.member", ALICE, ALICE, {"membership": "leave"}, [C, PL, m(ALICE)]),
    ("12", "m.room.member", ALICE, BOB, {"membership": "ban"}, [PL, m(ALICE), m(BOB)]),
    (
        "1",
        "m.room.member",
        ALICE,
        BOB,
        {"membership": "invite", **SIGNED},
        [C, PL, m(ALICE), m(BOB), JR, ("m.room.third_party_invite", "tok")],
    ),
    (
        "12",
        "m.room.member",
        ALICE,
        BOB,
        {"membership": "invite", **SIGNED},
        [PL, m(ALICE), m(BOB), JR, ("m.room.third_party_invite", "tok")],
    ),
    # The token only matters for invites, and must be a string.
    ("1", "m.room.member", BOB, BOB, {"membership": "join", **SIGNED}, [C, PL, m(BOB), JR]),
    (
        "1",
        "m.room.member",
        ALICE,
        BOB,
        {"membership": "invite", "third_party_invite": {"signed": {"token": 5}}},
        [C, PL, m(ALICE), m(BOB), JR],
    ),
    # join_authorised_via_users_server only where restricted joins exist (v8+).
    ("7", "m.room.member", BOB, BOB, {"membership": "join", VIA: ALICE}, [C, PL, m(BOB), JR]),
    (
        "8",
        "m.room.member",
        BOB,
        BOB,
        {"membership": "join", VIA: ALICE},
        [C, PL, m(BOB), JR, m(ALICE)],
    ),
    (
        "12",
        "m.room.member",
        BOB,
        BOB,
        {"membership": "join", VIA: ALICE},
        [PL, m(BOB), JR, m(ALICE)],
    ),
    ("12", "m.room.member", BOB, BOB, {"membership": "join", VIA: BOB}, [PL, m(BOB), JR]),
    ("10", "m.room.member", BOB, BOB, {"membership": "join", VIA: 5}, [C, PL, m(BOB), JR]),
]


@pytest.mark.parametrize(
    ("version", "event_type", "sender", "state_key", "content", "expected"),
    SELECTION_CASES,
    ids=[f"v{c[0]}-{c[1]}-{c[4].get('membership', '')}-{i}" for i, c in enumerate(SELECTION_CASES)],
)
def test_auth_types_for_event(version, event_type, sender, state_key, content, expected):
    room_version = KNOWN_ROOM_VERSIONS[version]
    assert auth_types_for_event(room_version, event_type, sender, state_key, content) == expected
