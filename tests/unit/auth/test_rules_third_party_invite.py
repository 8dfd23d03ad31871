"""Invites by third-party identifier: the ``signed`` block must verify with a key of the
``m.room.third_party_invite`` event its token names (spec, member rule "invite")."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from signedjson.key import generate_signing_key, get_verify_key

from homeserver.crypto.base64 import encode_base64
from homeserver.crypto.signing import sign_json
from tests.unit.auth.room import ALICE, BOB, CREATOR, Room, assert_outcome

KEY = generate_signing_key("1")
OTHER_KEY = generate_signing_key("2")
TOKEN = "tok3n"


def _public(key: Any) -> str:
    return encode_base64(get_verify_key(key).encode())


def _signed(mxid: str = BOB, token: str = TOKEN, key: Any = KEY) -> dict[str, Any]:
    return sign_json({"mxid": mxid, "token": token, "sender": CREATOR}, "id.example.org", key)


def _room(
    version: str,
    *,
    invite_content: dict[str, Any] | None = None,
    sender: str = CREATOR,
    members: dict[str, str] | None = None,
) -> Room:
    content = invite_content if invite_content is not None else {"public_key": _public(KEY)}
    return Room(
        version,
        users={ALICE: 50},
        members={ALICE: "join", **(members or {})},
        state=[("m.room.third_party_invite", TOKEN, sender, {"display_name": "b…", **content})],
    )


def _invite(room: Room, third_party_invite: Any, sender: str = CREATOR, target: str = BOB):
    return room.member(sender, "invite", target, third_party_invite=third_party_invite)


VERSIONS = ["1", "6", "11", "12"]


@pytest.mark.parametrize("version", VERSIONS)
def test_valid_signature_with_public_key(version):
    room = _room(version)
    assert_outcome(room, _invite(room, {"display_name": "b", "signed": _signed()}), None)


@pytest.mark.parametrize("version", VERSIONS)
def test_valid_signature_with_public_keys_list(version):
    room = _room(
        version,
        invite_content={
            "public_key": _public(OTHER_KEY),
            "public_keys": [{"public_key": "not base64!"}, {"public_key": _public(KEY)}],
        },
    )
    assert_outcome(room, _invite(room, {"signed": _signed()}), None)


@pytest.mark.parametrize("version", VERSIONS)
def test_signature_by_unknown_key_refused(version):
    room = _room(version)
    event = _invite(room, {"signed": _signed(key=OTHER_KEY)})
    assert_outcome(room, event, "no valid signature")


@pytest.mark.parametrize("version", ["1", "12"])
def test_tampered_signed_block_refused(version):
    room = _room(version)
    signed = _signed()
    signed["extra"] = "added after signing"
    assert_outcome(room, _invite(room, {"signed": signed}), "no valid signature")


@pytest.mark.parametrize("version", ["1", "12"])
def test_non_ed25519_key_ids_are_ignored(version):
    room = _room(version)
    signed = _signed()
    (signature,) = signed["signatures"]["id.example.org"].values()
    signed["signatures"] = {"id.example.org": {"curve25519:1": signature}}
    assert_outcome(room, _invite(room, {"signed": signed}), "no valid signature")


CASES = [
    ("no-signed", lambda: {"display_name": "b"}, {}, "no signed object"),
    ("signed-not-object", lambda: {"signed": "x"}, {}, "no signed object"),
    (
        "no-token",
        lambda: {"signed": {k: v for k, v in _signed().items() if k != "token"}},
        {},
        "signed needs mxid and token",
    ),
    (
        "no-mxid",
        lambda: {"signed": {k: v for k, v in _signed().items() if k != "mxid"}},
        {},
        "signed needs mxid and token",
    ),
    ("mxid-mismatch", lambda: {"signed": _signed(mxid=ALICE)}, {}, "mxid is not the state_key"),
    (
        "unknown-token",
        lambda: {"signed": _signed(token="other")},
        {},
        "no m.room.third_party_invite for the token",
    ),
    ("target-banned", lambda: {"signed": _signed()}, {"members": {BOB: "ban"}}, "target is banned"),
    (
        "other-sender",
        lambda: {"signed": _signed()},
        {"sender": ALICE},
        "sender differs from the m.room.third_party_invite",
    ),
]


@pytest.mark.parametrize("version", ["1", "12"])
@pytest.mark.parametrize(
    ("name", "make", "room_kwargs", "expect"), CASES, ids=[c[0] for c in CASES]
)
def test_third_party_invite_refusals(version, name, make, room_kwargs, expect):
    room = _room(version, **room_kwargs)
    assert_outcome(room, _invite(room, copy.deepcopy(make())), expect)


@pytest.mark.parametrize("version", ["1", "12"])
def test_third_party_invite_needs_no_membership_of_sender(version):
    # The sender's right comes from having sent the m.room.third_party_invite; the rule does not
    # look at the sender's membership now (spec: allow once a signature verifies).
    room = _room(version, sender=ALICE, members={ALICE: "leave"})
    assert_outcome(room, _invite(room, {"signed": _signed()}, sender=ALICE), None)
