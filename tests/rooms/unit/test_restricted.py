"""The pure rules of restricted rooms: which join rules are restricted or allow knocking per
room version, the allow list's usable rooms, and which of our users may authorise a join."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.event import Event
from homeserver.room_versions import get_room_version
from homeserver.rooms.restricted import (
    allowed_room_ids,
    allows_knock,
    is_restricted,
    pick_authoriser,
)


@pytest.mark.parametrize(
    ("version", "rule", "restricted", "knock"),
    [
        ("6", "restricted", False, False),
        ("7", "knock", False, True),
        ("7", "restricted", False, False),
        ("8", "restricted", True, False),
        ("9", "knock_restricted", False, False),
        ("10", "knock_restricted", True, True),
        ("11", "restricted", True, False),
        ("12", "knock", False, True),
        ("12", "public", False, False),
        ("12", "invite", False, False),
        ("12", None, False, False),
        ("12", ["restricted"], False, False),
    ],
)
def test_join_rule_kinds(version: str, rule: Any, restricted: bool, knock: bool) -> None:
    room_version = get_room_version(version)
    assert is_restricted(room_version, rule) is restricted
    assert allows_knock(room_version, rule) is knock


@pytest.mark.parametrize(
    ("content", "rooms"),
    [
        ({}, []),
        ({"allow": "!a:x"}, []),
        ({"allow": [{"type": "m.room_membership", "room_id": "!a:x"}]}, ["!a:x"]),
        (
            {
                "allow": [
                    {"type": "m.room_membership", "room_id": "!a:x"},
                    {"type": "m.room_membership", "room_id": "!a:x"},
                    {"type": "m.room_membership", "room_id": "!b:y"},
                ]
            },
            ["!a:x", "!b:y"],
        ),
        (
            {
                "allow": [
                    {"type": "m.other", "room_id": "!a:x"},
                    {"type": "m.room_membership"},
                    {"type": "m.room_membership", "room_id": 5},
                    {"type": "m.room_membership", "room_id": "not-a-room"},
                    "junk",
                    None,
                ]
            },
            [],
        ),
    ],
)
def test_allowed_room_ids(content: dict[str, Any], rooms: list[str]) -> None:
    assert allowed_room_ids(content) == rooms


def _event(version: str, event_type: str, sender: str, content: dict[str, Any]) -> Event:
    pdu = {
        "type": event_type,
        "room_id": "!r:x",
        "sender": sender,
        "state_key": "",
        "content": content,
        "event_id": "$e:x",
        "depth": 1,
        "origin_server_ts": 0,
        "prev_events": [],
        "auth_events": [],
    }
    return Event(pdu, get_room_version(version))


@pytest.mark.parametrize(
    ("version", "users", "extra", "candidates", "expected"),
    [
        # The most powerful of those at or above the invite level.
        ("10", {"@a:x": 100, "@b:x": 50}, {}, ["@b:x", "@a:x"], "@a:x"),
        # Ties: the smallest user ID.
        ("10", {"@b:x": 100, "@a:x": 100}, {}, ["@b:x", "@a:x"], "@a:x"),
        # Nobody may invite.
        ("10", {"@a:x": 50}, {"invite": 60}, ["@a:x"], None),
        # users_default may be enough.
        ("10", {}, {"users_default": 0, "invite": 0}, ["@c:x"], "@c:x"),
        # Only candidates count (a powerful user elsewhere is no help).
        ("10", {"@a:x": 100}, {"invite": 50}, ["@b:x"], None),
        ("10", {"@a:x": 100}, {}, [], None),
        # The invite level defaults to 0: anyone may.
        ("10", {"@a:x": 100}, {}, ["@b:x"], "@b:x"),
        # v12: the creator has infinite power without being in ``users``.
        ("12", {"@b:x": 50}, {}, ["@b:x", "@creator:x"], "@creator:x"),
    ],
)
def test_pick_authoriser(
    version: str,
    users: dict[str, int],
    extra: dict[str, Any],
    candidates: list[str],
    expected: str | None,
) -> None:
    create_content: dict[str, Any] = {"room_version": version}
    if not get_room_version(version).implicit_room_creator:
        create_content["creator"] = "@creator:x"
    create = _event(version, "m.room.create", "@creator:x", create_content)
    power = _event(version, "m.room.power_levels", "@creator:x", {"users": users, **extra})
    assert pick_authoriser(get_room_version(version), create, power, candidates) == expected
