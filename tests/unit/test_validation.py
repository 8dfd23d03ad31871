"""Event format checks: sizes, identifier grammar, strict canonical JSON, per room version."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.validation import EventValidationError, validate_pdu
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, V1, V5, V6, V10, V11, V12, RoomVersion
from tests.factories import make_pdu


def _pdu(room_version: RoomVersion, **overrides: Any) -> dict[str, Any]:
    pdu = make_pdu(
        room_version,
        event_type="m.room.message",
        sender="@alice:example.org",
        content={"body": "hi", "msgtype": "m.text"},
        room_id="!room:example.org",
        prev_events=["$prev:example.org"]
        if room_version.event_refs_carry_hashes
        else ["$" + "A" * 43],
        auth_events=[],
        depth=5,
    )
    for key, value in overrides.items():
        if value is None:
            pdu.pop(key, None)
        else:
            pdu[key] = value
    return pdu


@pytest.mark.parametrize("room_version", KNOWN_ROOM_VERSIONS.values(), ids=lambda v: v.identifier)
def test_well_formed_event_passes(room_version):
    validate_pdu(room_version, _pdu(room_version))


BAD_CASES = [
    ("missing type", {"type": None}, "'type'"),
    ("type not a string", {"type": 5}, "'type'"),
    ("content not an object", {"content": "x"}, "'content'"),
    ("depth negative", {"depth": -1}, "'depth'"),
    ("depth a bool", {"depth": True}, "'depth'"),
    ("ts missing", {"origin_server_ts": None}, "'origin_server_ts'"),
    ("hashes missing", {"hashes": None}, "'hashes'"),
    ("state_key not a string", {"state_key": 3}, "'state_key'"),
    ("sender not a user ID", {"sender": "alice"}, "'sender'"),
    ("sender bad server", {"sender": "@alice:exa mple"}, "'sender'"),
    ("room ID without sigil", {"room_id": "room:example.org"}, "room ID"),
    ("too many prev events", {"prev_events": ["$" + "A" * 43] * 21}, "prev_events"),
    ("too many auth events", {"auth_events": ["$" + "A" * 43] * 11}, "auth_events"),
    ("prev event ID without sigil", {"prev_events": ["abc"]}, "prev_events"),
    ("type longer than 255 characters", {"type": "t" * 256}, "'type'"),
    ("whole event over 64 KiB", {"content": {"body": "x" * 70000}}, "65536"),
]


@pytest.mark.parametrize("room_version", [V5, V11], ids=lambda v: v.identifier)
@pytest.mark.parametrize(("what", "overrides", "needle"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_malformed_event_names_its_reason(room_version, what, overrides, needle):
    with pytest.raises(EventValidationError) as info:
        validate_pdu(room_version, _pdu(room_version, **overrides))
    assert needle in info.value.reason


def test_v1_event_needs_its_event_id():
    with pytest.raises(EventValidationError, match="event_id"):
        validate_pdu(V1, _pdu(V1, event_id=None))


def test_v1_refs_need_hashes():
    with pytest.raises(EventValidationError, match=r"\[event_id, hashes\]"):
        validate_pdu(V1, _pdu(V1, prev_events=["$a:example.org"]))


@pytest.mark.parametrize(
    ("room_version", "refused"),
    [(V5, False), (V6, True), (V10, True), (V12, True)],
    ids=lambda v: getattr(v, "identifier", str(v)),
)
def test_floats_refused_from_v6(room_version, refused):
    pdu = _pdu(room_version, content={"body": "x", "weight": 1.5})
    if refused:
        with pytest.raises(EventValidationError, match="float"):
            validate_pdu(room_version, pdu)
    else:
        validate_pdu(room_version, pdu)


@pytest.mark.parametrize(("room_version", "refused"), [(V5, False), (V6, True)], ids=["5", "6"])
def test_big_integers_refused_from_v6(room_version, refused):
    pdu = _pdu(room_version, content={"n": 2**53})
    if refused:
        with pytest.raises(EventValidationError, match="out of range"):
            validate_pdu(room_version, pdu)
    else:
        validate_pdu(room_version, pdu)


@pytest.mark.parametrize(
    ("room_version", "soft"),
    [(V1, True), (V10, True), (V11, False), (V12, False)],
    ids=["1", "10", "11", "12"],
)
def test_byte_limit_is_soft_before_v11(room_version, soft):
    # 200 characters but 400 bytes: within the codepoint limit, over the byte limit
    pdu = _pdu(room_version, type="é" * 200)
    with pytest.raises(EventValidationError) as info:
        validate_pdu(room_version, pdu)
    assert info.value.soft is soft
    assert "bytes" in info.value.reason


def test_depth_cap_differs_from_v6():
    validate_pdu(V5, _pdu(V5, depth=2**53))
    with pytest.raises(EventValidationError, match="depth"):
        validate_pdu(V6, _pdu(V6, depth=2**53))


def test_v12_create_must_not_have_room_id():
    pdu = _pdu(V12, type="m.room.create", state_key="", prev_events=[])
    with pytest.raises(EventValidationError, match="room_id"):
        validate_pdu(V12, pdu)
    validate_pdu(V12, _pdu(V12, type="m.room.create", state_key="", prev_events=[], room_id=None))
