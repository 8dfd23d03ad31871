"""m.room.create, the auth_events sanity rule, the v12 room ID rule and m.federate."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.auth.rules import AuthError, check_auth_events_for_event, check_auth_rules
from homeserver.events.event import Event
from homeserver.events.state_keys import CREATE_KEY
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from tests.factories import RoomFactory
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
    member,
    run_case,
    versions_where,
)

PRE_V11 = versions_where(lambda v: not v.implicit_room_creator)
V11_UP = versions_where(lambda v: v.implicit_room_creator)
PRE_V12 = versions_where(lambda v: not v.room_id_is_create_event_hash)


def _create(
    version_id: str,
    *,
    server: str = "example.org",
    drop: tuple[str, ...] = (),
    content: dict[str, Any] | None = None,
    pdu: dict[str, Any] | None = None,
) -> Event:
    version = KNOWN_ROOM_VERSIONS[version_id]
    event = RoomFactory(version, server=server).create(CREATOR, content)
    body = dict(event.pdu)
    body["content"] = {k: v for k, v in event.content.items() if k not in drop}
    body.update(pdu or {})
    return Event(body, version)


def _outcome(version_id: str, event: Event) -> str | None:
    try:
        check_auth_rules(KNOWN_ROOM_VERSIONS[version_id], event, {})
    except AuthError as e:
        return e.reason
    return None


CREATE_CASES = [
    *[pytest.param(v, {}, None, id=f"valid-v{v}") for v in ALL_VERSIONS],
    *[
        pytest.param(
            v, {"pdu": {"prev_events": ["$x"]}}, "must not have prev_events", id=f"prev-events-v{v}"
        )
        for v in ("3", "11", "12")
    ],
    pytest.param(
        "1",
        {"pdu": {"prev_events": [["$x:a", {"sha256": "x"}]]}},
        "must not have prev_events",
        id="prev-events-v1",
    ),
    # v1-v11: the room ID's server must be the creator's.
    *[
        pytest.param(
            v,
            {"server": "other.org"},
            "room_id's server must be the sender's server",
            id=f"room-id-domain-v{v}",
        )
        for v in PRE_V12
    ],
    pytest.param(
        "12",
        {"pdu": {"room_id": "!room:example.org"}},
        "must not have a room_id",
        id="room-id-present-v12",
    ),
    *[
        pytest.param(
            v,
            {"content": {"room_version": "99"}},
            "unknown room_version",
            id=f"unknown-room-version-v{v}",
        )
        for v in ("1", "6", "12")
    ],
    *[
        pytest.param(
            v,
            {"content": {"room_version": 7}},
            "unknown room_version",
            id=f"room-version-not-string-v{v}",
        )
        for v in ("1", "12")
    ],
    # Before v11 the create event must name its creator; from v11 the sender is the creator.
    *[
        pytest.param(v, {"drop": ("creator",)}, "no creator", id=f"no-creator-v{v}")
        for v in PRE_V11
    ],
    *[pytest.param(v, {"drop": ("creator",)}, None, id=f"no-creator-v{v}") for v in V11_UP],
    # additional_creators only exists (and is only checked) in v12.
    pytest.param(
        "12",
        {"content": {"additional_creators": [ALICE, RITA]}},
        None,
        id="additional-creators-v12",
    ),
    pytest.param(
        "12",
        {"content": {"additional_creators": ALICE}},
        "additional_creators must be a list",
        id="additional-creators-not-list-v12",
    ),
    pytest.param(
        "12",
        {"content": {"additional_creators": ["alice"]}},
        "additional_creators must be a list",
        id="additional-creators-bad-id-v12",
    ),
    pytest.param(
        "12",
        {"content": {"additional_creators": [7]}},
        "additional_creators must be a list",
        id="additional-creators-int-v12",
    ),
    pytest.param(
        "11",
        {"content": {"additional_creators": "junk"}},
        None,
        id="additional-creators-ignored-v11",
    ),
]


@pytest.mark.parametrize(("version", "kwargs", "expect"), CREATE_CASES)
def test_create(version, kwargs, expect):
    reason = _outcome(version, _create(version, **kwargs))
    if expect is None:
        assert reason is None
    else:
        assert reason is not None and expect in reason


# --- the auth_events list ---


def _sanity(room: Room, event: Event, auth: list[Event] | None = None) -> str | None:
    supplied = auth if auth is not None else [room.events[i] for i in event.auth_event_ids()]
    try:
        check_auth_events_for_event(room.version, event, supplied)
    except AuthError as e:
        return e.reason
    return None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_selected_auth_events_pass(version):
    room = Room(version, members={BOB: "join"})
    assert _sanity(room, room.event("m.room.message", BOB, {"body": "hi"})) is None


@pytest.mark.parametrize("version", ["1", "3", "12"])
def test_duplicate_auth_event_refused(version):
    room = Room(version, members={BOB: "join"})
    member_event = room.state[("m.room.member", BOB)]
    keys = [("m.room.power_levels", ""), ("m.room.member", BOB)]
    if room.version.create_event_in_auth_events:
        keys.insert(0, CREATE_KEY)
    auth = [room.state[k] for k in keys] + [member_event]
    event = room.event("m.room.message", BOB, {"body": "hi"}, auth=auth)
    assert "duplicate entry" in _sanity(room, event)


@pytest.mark.parametrize("version", ["2", "12"])
def test_two_events_with_one_key_refused(version):
    room = Room(version, members={BOB: "join"})
    old_member = room.state[("m.room.member", BOB)]
    new_member = room.put(room.member(BOB, "join", displayname="B"))
    keys = [("m.room.power_levels", "")] + ([CREATE_KEY] if version != "12" else [])
    auth = [room.state[k] for k in keys] + [old_member, new_member]
    event = room.event("m.room.message", BOB, {"body": "hi"}, auth=auth)
    assert "duplicate entry" in _sanity(room, event)


@pytest.mark.parametrize("version", ["1", "6", "12"])
def test_unexpected_auth_event_refused(version):
    room = Room(version, members={BOB: "join"})
    plain = room.event("m.room.message", BOB, {"body": "hi"})
    auth = [room.events[i] for i in plain.auth_event_ids()] + [
        room.state[("m.room.join_rules", "")]
    ]
    event = room.event("m.room.message", BOB, {"body": "hi"}, auth=auth)
    assert "is not an auth event for this event" in _sanity(room, event)


@pytest.mark.parametrize("version", ["1", "12"])
def test_rejected_auth_event_refused(version):
    room = Room(version, members={BOB: "join"})
    room.state[("m.room.power_levels", "")].internal.rejected_reason = "auth"
    event = room.event("m.room.message", BOB, {"body": "hi"})
    assert "was itself rejected" in _sanity(room, event)


@pytest.mark.parametrize("version", ["1", "12"])
def test_unsupplied_auth_event_refused(version):
    room = Room(version, members={BOB: "join"})
    event = room.event("m.room.message", BOB, {"body": "hi"})
    assert "was not supplied" in _sanity(room, event, auth=[])


@pytest.mark.parametrize("version", ["1", "11", "12"])
def test_auth_event_from_other_room_refused(version):
    room = Room(version, members={BOB: "join"})
    other = Room(version)
    other.factory.room_id = "!elsewhere:example.org" if version != "12" else other.factory.room_id
    foreign_pl = other.event("m.room.power_levels", CREATOR, {}, state_key="")
    keys = [("m.room.member", BOB)] + ([CREATE_KEY] if version != "12" else [])
    auth = [room.state[k] for k in keys] + [foreign_pl]
    event = room.event("m.room.message", BOB, {"body": "hi"}, auth=auth)
    assert "is from another room" in _sanity(room, event, auth=auth)


@pytest.mark.parametrize("version", PRE_V12)
def test_missing_create_refused_before_v12(version):
    room = Room(version, members={BOB: "join"})
    auth = [room.state[("m.room.power_levels", "")], room.state[("m.room.member", BOB)]]
    event = room.event("m.room.message", BOB, {"body": "hi"}, auth=auth)
    assert "no m.room.create event" in _sanity(room, event)


@pytest.mark.parametrize(
    ("version", "expect"), [("11", None), ("12", "must not list the m.room.create event")]
)
def test_create_listed(version, expect):
    room = Room(version, members={BOB: "join"})
    keys = [CREATE_KEY, ("m.room.power_levels", ""), ("m.room.member", BOB)]
    event = room.event("m.room.message", BOB, {"body": "hi"}, auth=[room.state[k] for k in keys])
    assert_outcome(room, event, expect)


def test_check_auth_rules_without_create_refused():
    room = Room("11", members={BOB: "join"})
    event = room.event("m.room.message", BOB, {"body": "hi"})
    state = {k: v for k, v in room.state.items() if k != CREATE_KEY}
    with pytest.raises(AuthError, match=r"no m\.room\.create event"):
        check_auth_rules(room.version, event, state)


# --- v12: the room ID is the create event's ID ---


def test_v12_room_id_must_match_create_event():
    room = Room("12", members={BOB: "join"})
    event = room.event("m.room.message", BOB, {"body": "hi"}, room_id="!notthecreateevent")
    assert_outcome(room, event, "room_id is not the ID of an accepted m.room.create event")


def test_v12_rejected_create_event_refused():
    room = Room("12", members={BOB: "join"})
    room.create.internal.rejected_reason = "bad"
    event = room.event("m.room.message", BOB, {"body": "hi"})
    assert_outcome(room, event, "room_id is not the ID of an accepted m.room.create event")


def test_v12_other_rooms_create_event_refused():
    room = Room("12", members={BOB: "join"})
    other = Room("12")
    event = room.event("m.room.message", BOB, {"body": "hi"})
    state = {**room.state, CREATE_KEY: other.create}
    with pytest.raises(AuthError, match="another room"):
        check_auth_rules(room.version, event, state)


@pytest.mark.parametrize("version", ["11", "12"])
def test_matching_room_id_allowed(version):
    room = Room(version, members={BOB: "join"})
    assert_outcome(room, room.event("m.room.message", BOB, {"body": "hi"}), None)


# --- m.federate ---

NOT_FEDERATED = {"create_content": {"m.federate": False}, "join_rule": "public"}
FEDERATE_CASES = [
    *cases(
        "remote-join-unfederated", ALL_VERSIONS, NOT_FEDERATED, member(RITA, "join"), "m.federate"
    ),
    *cases("local-join-unfederated", ["1", "12"], NOT_FEDERATED, member(ALICE, "join"), None),
    *cases(
        "remote-join-federated",
        ["1", "12"],
        {"create_content": {"m.federate": True}, "join_rule": "public"},
        member(RITA, "join"),
        None,
    ),
    *cases(
        "remote-message-unfederated",
        ["5", "12"],
        {**NOT_FEDERATED, "members": {RITA: "join"}},
        ev("m.room.message", RITA, {"body": "hi"}),
        "m.federate",
    ),
]


@pytest.mark.parametrize(("version", "room", "make", "expect"), FEDERATE_CASES)
def test_federate(version, room, make, expect):
    run_case(version, room, make, expect)
