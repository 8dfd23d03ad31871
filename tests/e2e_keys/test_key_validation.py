"""homeserver/e2e/key_validation.py: every check on uploaded keys, table driven (pure, no
database), with keys signed by signedjson as a client signs them."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from homeserver.e2e.key_validation import (
    MAX_ONE_TIME_KEYS_PER_UPLOAD,
    new_signature,
    parse_cross_signing_key,
    parse_key_upload,
    parse_signatures_upload,
    same_one_time_key,
)
from homeserver.errors import MatrixError
from tests.e2e_keys.helpers import CrossSigning, Device

USER = "@alice:test.example"
DEVICE = "ALICEDEV"

Body = dict[str, Any]


def device() -> Device:
    return Device(USER, DEVICE)


def with_device_keys(change: Callable[[Body], None]) -> Callable[[Device], Body]:
    def build(dev: Device) -> Body:
        keys = dev.device_keys()
        change(keys)
        return {"device_keys": keys}

    return build


def resigned(change: Callable[[Body], None]) -> Callable[[Device], Body]:
    """Device keys changed before they are signed (so the signature is good)."""

    def build(dev: Device) -> Body:
        keys = dev.device_keys()
        del keys["signatures"]
        change(keys)
        return {"device_keys": dev.sign(keys)}

    return build


def otks(build_keys: Callable[[Device], Body]) -> Callable[[Device], Body]:
    def build(dev: Device) -> Body:
        return {"device_keys": dev.device_keys(), "one_time_keys": build_keys(dev)}

    return build


def set_(key: str, value: Any) -> Callable[[Body], None]:
    def change(obj: Body) -> None:
        obj[key] = value

    return change


def drop_key(key_id: str) -> Callable[[Body], None]:
    def change(obj: Body) -> None:
        del obj["keys"][key_id]

    return change


def tamper_signature(obj: Body) -> None:
    sig = obj["signatures"][USER][f"ed25519:{DEVICE}"]
    obj["signatures"][USER][f"ed25519:{DEVICE}"] = ("A" if sig[0] != "A" else "B") + sig[1:]


def signed_by_other_device(dev: Device) -> Body:
    other = Device(USER, DEVICE)  # same IDs, another key: the signature does not verify
    keys = dev.device_keys()
    keys["signatures"] = other.device_keys()["signatures"]
    return {"device_keys": keys}


def bad_otk_signature(dev: Device) -> Body:
    key = dev.one_time_key("K1")
    key["key"] = "changed after signing"
    return {"signed_curve25519:K1": key}


# (name, body builder, expected (status, errcode))
REFUSED: list[tuple[str, Callable[[Device], Body], tuple[int, str]]] = [
    ("device_keys not an object", lambda d: {"device_keys": []}, (400, "M_BAD_JSON")),
    ("device_keys null", lambda d: {"device_keys": None}, (400, "M_BAD_JSON")),
    ("other user", resigned(set_("user_id", "@bob:test.example")), (400, "M_BAD_JSON")),
    ("other device", resigned(set_("device_id", "OTHER")), (400, "M_BAD_JSON")),
    ("algorithms not a list", resigned(set_("algorithms", "x")), (400, "M_BAD_JSON")),
    ("algorithms not strings", resigned(set_("algorithms", [1])), (400, "M_BAD_JSON")),
    ("keys not an object", resigned(set_("keys", ["x"])), (400, "M_BAD_JSON")),
    ("key not a string", resigned(set_("keys", {f"ed25519:{DEVICE}": 1})), (400, "M_BAD_JSON")),
    ("no curve25519 key", resigned(drop_key(f"curve25519:{DEVICE}")), (400, "M_INVALID_PARAM")),
    ("no ed25519 key", resigned(drop_key(f"ed25519:{DEVICE}")), (400, "M_INVALID_PARAM")),
    (
        "ed25519 key not a key",
        resigned(lambda k: k["keys"].update({f"ed25519:{DEVICE}": "bm90IGEga2V5"})),
        (400, "M_INVALID_PARAM"),
    ),
    ("unsigned", with_device_keys(lambda k: k.pop("signatures")), (400, "M_INVALID_SIGNATURE")),
    ("signatures malformed", with_device_keys(set_("signatures", [])), (400, "M_BAD_JSON")),
    (
        "signatures of someone else only",
        with_device_keys(set_("signatures", {"@bob:test.example": {"ed25519:X": "abc"}})),
        (400, "M_INVALID_SIGNATURE"),
    ),
    ("signature tampered", with_device_keys(tamper_signature), (400, "M_INVALID_SIGNATURE")),
    (
        "content changed after signing",
        with_device_keys(set_("algorithms", ["m.megolm.v1.aes-sha2"])),
        (400, "M_INVALID_SIGNATURE"),
    ),
    ("signed by another key", signed_by_other_device, (400, "M_INVALID_SIGNATURE")),
    ("one_time_keys not an object", otks(lambda d: []), (400, "M_BAD_JSON")),  # type: ignore[arg-type,return-value]
    ("key name without algorithm", otks(lambda d: {"K1": "abc"}), (400, "M_BAD_JSON")),
    ("key name with two colons", otks(lambda d: {"a:b:c": "abc"}), (400, "M_BAD_JSON")),
    ("empty key id", otks(lambda d: {"curve25519:": "abc"}), (400, "M_BAD_JSON")),
    ("NUL in key id", otks(lambda d: {"curve25519:a\x00": "abc"}), (400, "M_BAD_JSON")),
    ("key a number", otks(lambda d: {"curve25519:K1": 5}), (400, "M_BAD_JSON")),
    ("signed key without key", otks(lambda d: {"signed_curve25519:K1": {}}), (400, "M_BAD_JSON")),
    (
        "signed key unsigned",
        otks(lambda d: {"signed_curve25519:K1": {"key": "abc"}}),
        (400, "M_INVALID_SIGNATURE"),
    ),
    (
        "signed key with a bad signature",
        otks(bad_otk_signature),
        (400, "M_INVALID_SIGNATURE"),
    ),
    (
        "fallback flag not a boolean",
        lambda d: {
            "device_keys": d.device_keys(),
            "fallback_keys": {"signed_curve25519:F": {**d.one_time_key("F"), "fallback": "yes"}},
        },
        (400, "M_BAD_JSON"),
    ),
    (
        "two fallback keys of one algorithm",
        lambda d: {
            "device_keys": d.device_keys(),
            "fallback_keys": {
                "signed_curve25519:F1": d.one_time_key("F1", fallback=True),
                "signed_curve25519:F2": d.one_time_key("F2", fallback=True),
            },
        },
        (400, "M_INVALID_PARAM"),
    ),
    (
        "signed fallback key with a bad signature",
        lambda d: {"device_keys": d.device_keys(), "fallback_keys": bad_otk_signature(d)},
        (400, "M_INVALID_SIGNATURE"),
    ),
    (
        "signed key and no device key to check it",
        lambda d: {"one_time_keys": {"signed_curve25519:K1": d.one_time_key("K1")}},
        (400, "M_INVALID_SIGNATURE"),
    ),
    (
        "too many one-time keys",
        lambda d: {
            "device_keys": d.device_keys(),
            "one_time_keys": {
                f"curve25519:K{i}": "abc" for i in range(MAX_ONE_TIME_KEYS_PER_UPLOAD + 1)
            },
        },
        (413, "M_TOO_LARGE"),
    ),
]


@pytest.mark.parametrize(
    ("build", "expected"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_refused_uploads(build: Callable[[Device], Body], expected: tuple[int, str]) -> None:
    with pytest.raises(MatrixError) as caught:
        parse_key_upload(build(device()), USER, DEVICE, None)
    assert (caught.value.status, caught.value.errcode) == expected


def test_a_signed_upload_is_accepted_whole() -> None:
    dev = device()
    keys = {**dev.device_keys(), "unsigned": {"device_display_name": "mine"}}
    otk = dev.one_time_keys(MAX_ONE_TIME_KEYS_PER_UPLOAD - 1)
    otk["curve25519:PLAIN"] = "plainkey"
    fallback = {"signed_curve25519:F": dev.one_time_key("F", fallback=True)}
    upload = parse_key_upload(
        {"device_keys": keys, "one_time_keys": otk, "fallback_keys": fallback}, USER, DEVICE, None
    )
    assert upload.device_keys is not None and "unsigned" not in upload.device_keys
    assert upload.device_keys["signatures"] == keys["signatures"]
    assert len(upload.one_time_keys) == MAX_ONE_TIME_KEYS_PER_UPLOAD
    assert {(k.algorithm, k.key_id) for k in upload.fallback_keys} == {("signed_curve25519", "F")}


def test_signed_keys_checked_against_the_stored_device_keys() -> None:
    dev = device()
    body = {"one_time_keys": dev.one_time_keys(3)}
    assert len(parse_key_upload(body, USER, DEVICE, dev.device_keys()).one_time_keys) == 3
    other = Device(USER, DEVICE)
    with pytest.raises(MatrixError) as caught:
        parse_key_upload(body, USER, DEVICE, other.device_keys())
    assert caught.value.errcode == "M_INVALID_SIGNATURE"


def test_same_one_time_key_ignores_signatures_only() -> None:
    dev = device()
    key = dev.one_time_key("K")
    resigned_key = {**key, "signatures": {USER: {"ed25519:OTHER": "x"}}}
    assert same_one_time_key(key, resigned_key)
    assert not same_one_time_key(key, {**key, "key": "other"})
    assert same_one_time_key("abc", "abc")
    assert not same_one_time_key("abc", key)


# --- cross-signing keys -----------------------------------------------------------------------
def cs() -> CrossSigning:
    return CrossSigning(USER)


def _master_with(**changes: Any) -> Callable[[CrossSigning], tuple[Any, str, Any]]:
    return lambda c: ({**c.master_key(), **changes}, "master", None)


CROSS_REFUSED: list[tuple[str, Callable[[CrossSigning], tuple[Any, str, Any]], str]] = [
    ("not an object", lambda c: ("x", "master", None), "M_BAD_JSON"),
    ("other user", _master_with(user_id="@bob:test.example"), "M_INVALID_PARAM"),
    ("usage missing", _master_with(usage=None), "M_MISSING_PARAM"),
    ("usage without its type", _master_with(usage=["self_signing"]), "M_INVALID_PARAM"),
    ("two keys", _master_with(keys={"ed25519:a": "a", "ed25519:b": "b"}), "M_INVALID_PARAM"),
    ("no key", _master_with(keys={}), "M_INVALID_PARAM"),
    (
        "not ed25519",
        lambda c: (
            {**c.master_key(), "keys": {f"curve25519:{c.master.version}": c.master.version}},
            "master",
            None,
        ),
        "M_INVALID_PARAM",
    ),
    (
        "key ID is not the key",
        lambda c: (
            {**c.master_key(), "keys": {"ed25519:other": c.master.version}},
            "master",
            None,
        ),
        "M_INVALID_PARAM",
    ),
    (
        "self-signing key not signed",
        lambda c: (c.key("self_signing", c.self_signing), "self_signing", c.master_key()),
        "M_INVALID_SIGNATURE",
    ),
    (
        "self-signing key signed by another master",
        lambda c: (CrossSigning(USER).self_signing_key(), "self_signing", c.master_key()),
        "M_INVALID_SIGNATURE",
    ),
    (
        "user-signing key signed by itself",
        lambda c: (
            {
                **c.key("user_signing", c.user_signing),
                "signatures": c.self_signing_key()["signatures"],
            },
            "user_signing",
            c.master_key(),
        ),
        "M_INVALID_SIGNATURE",
    ),
]


@pytest.mark.parametrize(
    ("build", "errcode"), [c[1:] for c in CROSS_REFUSED], ids=[c[0] for c in CROSS_REFUSED]
)
def test_refused_cross_signing_keys(
    build: Callable[[CrossSigning], tuple[Any, str, Any]], errcode: str
) -> None:
    key, key_type, master = build(cs())
    with pytest.raises(MatrixError) as caught:
        parse_cross_signing_key(key, USER, key_type, master)
    assert (caught.value.status, caught.value.errcode) == (400, errcode)


def test_cross_signing_keys_accepted() -> None:
    c = cs()
    master = parse_cross_signing_key(c.master_key(), USER, "master")
    assert master == c.master_key()
    assert parse_cross_signing_key(c.self_signing_key(), USER, "self_signing", master)
    assert parse_cross_signing_key(c.user_signing_key(), USER, "user_signing", master)


# --- /keys/signatures/upload ---------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        [],
        {USER: []},
        {USER: {"DEV": "x"}},
        {USER: {"DEV": None}},
        {"@a\x00:x": {}},
        {"not a user": {}},
        {USER: {"": {}}},
    ],
    ids=["list", "user not object", "key a string", "key null", "NUL user", "no user", "no key"],
)
def test_malformed_signature_uploads(body: Any) -> None:
    with pytest.raises(MatrixError) as caught:
        parse_signatures_upload(body)
    assert caught.value.status == 400


def test_new_signature_requires_the_same_key_and_the_signature() -> None:
    dev = device()
    stored = dev.device_keys()
    signed = copy.deepcopy(stored)
    signed["signatures"][USER]["ed25519:SSK"] = "sig"
    assert new_signature(signed, stored, USER, "ed25519:SSK") == "sig"
    with pytest.raises(MatrixError) as missing:
        new_signature(stored, stored, USER, "ed25519:SSK")
    assert missing.value.errcode == "M_INVALID_SIGNATURE"
    with pytest.raises(MatrixError) as differs:
        new_signature({**signed, "algorithms": []}, stored, USER, "ed25519:SSK")
    assert differs.value.errcode == "M_INVALID_PARAM"
