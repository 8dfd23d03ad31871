"""The receipt checks that need no state: format, signatures (through a keyring), content hash."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from homeserver.crypto.signing import generate_signing_key
from homeserver.events.event import Event
from homeserver.events.hashes import add_content_hash
from homeserver.events.signing import sign_event
from homeserver.federation.keyring import SignatureVerifyError
from homeserver.federation.pdu_checks import (
    BadPduSignature,
    InvalidPdu,
    check_hash,
    check_pdu,
    parse_pdu,
)
from homeserver.room_versions import RoomVersion, get_room_version

V1 = get_room_version("1")
V5 = get_room_version("5")
V10 = get_room_version("10")
V12 = get_room_version("12")
KEY = generate_signing_key("k1")
ROOM = "!room:remote.example"
EVENT_ID = "$abcdef:remote.example"


def make_pdu(room_version: RoomVersion, **overrides: Any) -> dict[str, Any]:
    pdu: dict[str, Any] = {
        "type": "m.room.message",
        "room_id": ROOM,
        "sender": "@r:remote.example",
        "content": {"msgtype": "m.text", "body": "hello"},
        "depth": 5,
        "origin_server_ts": 1_700_000_000_000,
        "prev_events": ["$prev"],
        "auth_events": ["$auth"],
    }
    if room_version.event_refs_carry_hashes:
        pdu["event_id"] = EVENT_ID
        pdu["prev_events"] = [["$prev:remote.example", {"sha256": "x"}]]
        pdu["auth_events"] = [["$auth:remote.example", {"sha256": "x"}]]
    pdu.update(overrides)
    add_content_hash(pdu)
    sign_event(room_version, pdu, "remote.example", KEY)
    return pdu


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(pdu: dict[str, Any]) -> None:
        pdu[key] = value

    return change


def _delete(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda pdu: pdu.pop(key)


INVALID: list[tuple[str, RoomVersion, Callable[[dict[str, Any]], None]]] = [
    ("no type", V12, _delete("type")),
    ("content not an object", V12, _set("content", [])),
    ("depth negative", V12, _set("depth", -1)),
    ("depth not an int", V12, _set("depth", "5")),
    ("no hashes", V12, _delete("hashes")),
    ("no room_id", V12, _delete("room_id")),
    ("bad sender", V12, _set("sender", "nobody")),
    ("21 prev_events", V12, _set("prev_events", [f"$p{i}" for i in range(21)])),
    ("11 auth_events", V12, _set("auth_events", [f"$a{i}" for i in range(11)])),
    ("over 64 KiB", V12, lambda p: p["content"].update(body="x" * 70_000)),
    ("v6+ integer out of range", V12, lambda p: p["content"].update(n=2**53)),
    ("v6+ float", V10, lambda p: p["content"].update(n=1.5)),
    ("v1 without event_id", V1, _delete("event_id")),
    ("v1 refs without hashes", V1, _set("prev_events", ["$p:remote.example"])),
]


@pytest.mark.parametrize(
    ("room_version", "mutate"),
    [pytest.param(v, m, id=name) for name, v, m in INVALID],
)
def test_malformed_pdus_are_dropped(
    room_version: RoomVersion, mutate: Callable[[dict[str, Any]], None]
) -> None:
    pdu = make_pdu(room_version)
    mutate(pdu)
    with pytest.raises(InvalidPdu):
        parse_pdu(room_version, pdu)


@pytest.mark.parametrize("pdu", [None, [], "x", 3], ids=["null", "list", "string", "int"])
def test_non_objects_are_dropped(pdu: Any) -> None:
    with pytest.raises(InvalidPdu):
        parse_pdu(V12, pdu)


def test_well_formed_pdus_parse() -> None:
    for room_version in (V1, V5, V10, V12):
        pdu = make_pdu(room_version)
        event = parse_pdu(room_version, pdu)
        assert not event.rejected and not event.internal.redacted
    # Room versions before 6 do not enforce the canonical JSON integer range.
    parse_pdu(V5, make_pdu(V5, content={"n": 2**60}))


def test_v1_event_id_comes_from_the_pdu_and_v3_plus_is_computed() -> None:
    assert parse_pdu(V1, make_pdu(V1)).event_id == EVENT_ID
    pdu = make_pdu(V12)
    assert parse_pdu(V12, pdu).event_id == Event(pdu, V12).event_id


def test_overlong_state_key_in_old_version_is_rejected_not_dropped() -> None:
    # 255 characters, but more than 255 bytes: a "soft" failure before v11.
    state_key = "é" * 200
    event = parse_pdu(V10, make_pdu(V10, state_key=state_key, type="m.custom"))
    assert event.rejected
    with pytest.raises(InvalidPdu):
        parse_pdu(V12, make_pdu(V12, state_key=state_key, type="m.custom"))


def test_unsigned_is_stripped_except_room_state_of_membership() -> None:
    pdu = make_pdu(V12)
    pdu["unsigned"] = {"age": 5, "redacted_because": {}}
    assert "unsigned" not in parse_pdu(V12, pdu).pdu
    member = make_pdu(
        V12, type="m.room.member", state_key="@r:remote.example", content={"membership": "invite"}
    )
    member["unsigned"] = {"invite_room_state": [{"type": "x"}], "age": 1}
    assert parse_pdu(V12, member).pdu["unsigned"] == {"invite_room_state": [{"type": "x"}]}


def test_parsing_copies_the_pdu() -> None:
    pdu = make_pdu(V12)
    event = parse_pdu(V12, pdu)
    pdu["content"]["body"] = "changed afterwards"
    assert event.content["body"] == "hello"


def test_content_hash_match_keeps_the_event() -> None:
    event = parse_pdu(V12, make_pdu(V12))
    assert check_hash(event) is event


def test_content_hash_mismatch_keeps_a_redacted_copy() -> None:
    pdu = make_pdu(V12)
    original = parse_pdu(V12, copy.deepcopy(pdu))
    pdu["content"]["body"] = "tampered"
    event = parse_pdu(V12, pdu)
    redacted = check_hash(event)
    assert redacted.internal.redacted
    assert redacted.content == {}
    # Redaction does not change the reference hash: same event ID as the genuine event.
    assert redacted.event_id == event.event_id == original.event_id


class _Keyring:
    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.checked: list[str] = []

    async def verify_event(self, event: Event, *, check_authorising_server: bool = True) -> None:
        self.checked.append(event.event_id)
        if self.fail:
            raise SignatureVerifyError("bad signature")


async def test_check_pdu_drops_bad_signatures() -> None:
    with pytest.raises(BadPduSignature):
        await check_pdu(V12, make_pdu(V12), _Keyring(fail=True))


async def test_check_pdu_runs_format_then_signature_then_hash() -> None:
    keyring = _Keyring(fail=False)
    with pytest.raises(InvalidPdu):
        await check_pdu(V12, make_pdu(V12, depth=-1), keyring)
    assert keyring.checked == []  # format first: no key lookups for garbage
    pdu = make_pdu(V12)
    pdu["content"]["body"] = "tampered"
    event = await check_pdu(V12, pdu, keyring)
    assert event.internal.redacted and keyring.checked == [event.event_id]
