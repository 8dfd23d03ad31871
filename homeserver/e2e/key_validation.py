"""Parsing and checking the keys clients upload (pure functions, no storage).

A device's identity keys must be signed by the device's own ed25519 key, signed one-time and
fallback keys by that same key, the self-signing and user-signing keys by the master key: the
server checks what it can, so a client never receives keys that fail on its own checks. Errors
are Matrix errors: malformed input 400 M_BAD_JSON / M_INVALID_PARAM, a missing or wrong
signature 400 M_INVALID_SIGNATURE, too many one-time keys at once 413 M_TOO_LARGE.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from nacl.signing import VerifyKey

from homeserver.crypto.base64 import decode_base64
from homeserver.crypto.signing import SignatureError, verify_json
from homeserver.errors import BadRequest, Codes, MatrixError
from homeserver.types import user_id_error

#: errcode of a missing or bad signature (not in every spec version's list, but what Synapse
#: and clients use).
INVALID_SIGNATURE = "M_INVALID_SIGNATURE"

#: One-time keys accepted in one /keys/upload (clients upload 50 at a time at most).
MAX_ONE_TIME_KEYS_PER_UPLOAD = 100
#: Identifiers (algorithms, key IDs) longer than this are not keys anyone generates.
MAX_KEY_ID_LENGTH = 255

CROSS_SIGNING_TYPES = ("master", "self_signing", "user_signing")


class InvalidSignature(BadRequest):
    def __init__(self, message: str) -> None:
        super().__init__(message, INVALID_SIGNATURE)


class TooManyKeys(MatrixError):
    def __init__(self, message: str) -> None:
        super().__init__(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, Codes.TOO_LARGE, message)


@dataclass(frozen=True, slots=True)
class UploadedKey:
    """A one-time or fallback key: ``<algorithm>:<key_id>`` → ``key`` (a string or a signed
    object)."""

    algorithm: str
    key_id: str
    key: str | dict[str, Any]


@dataclass(frozen=True, slots=True)
class KeyUpload:
    """The body of ``POST /keys/upload``, checked."""

    device_keys: dict[str, Any] | None
    one_time_keys: list[UploadedKey]
    fallback_keys: list[UploadedKey]


def _is_clean_id(value: Any) -> bool:
    # NUL cannot be stored in PostgreSQL text; refuse it on both engines alike.
    return isinstance(value, str) and 0 < len(value) <= MAX_KEY_ID_LENGTH and "\x00" not in value


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _signatures_ok(value: Any) -> bool:
    return isinstance(value, dict) and all(_string_map(v) for v in value.values())


def ed25519_verify_key(public_key: Any) -> VerifyKey:
    """The verify key of an unpadded-base64 ed25519 public key; 400 if it is not one."""
    if not isinstance(public_key, str):
        raise BadRequest("ed25519 key must be a string", Codes.INVALID_PARAM)
    try:
        return VerifyKey(decode_base64(public_key))
    except (ValueError, TypeError):
        # nacl raises its own ValueError subclass for a key of the wrong length.
        raise BadRequest("Invalid ed25519 key", Codes.INVALID_PARAM) from None


def check_signed_by(
    obj: Mapping[str, Any], user_id: str, key_id: str, public_key: str, what: str
) -> None:
    """400 M_INVALID_SIGNATURE unless ``obj`` carries ``user_id``'s valid signature by the
    ed25519 key ``key_id`` (public key ``public_key``)."""
    verify_key = ed25519_verify_key(public_key)
    try:
        verify_json(obj, user_id, key_id, verify_key)
    except SignatureError:
        raise InvalidSignature(f"Missing or invalid signature on {what}") from None


# --- device keys ----------------------------------------------------------------------------
def parse_device_keys(value: Any, user_id: str, device_id: str) -> dict[str, Any]:
    """``device_keys`` of /keys/upload: the requester's own device, signed by itself. The
    returned copy has no ``unsigned`` (the server adds its own when the keys are queried)."""
    if not isinstance(value, dict):
        raise BadRequest("device_keys must be an object", Codes.BAD_JSON)
    if value.get("user_id") != user_id:
        raise BadRequest(
            "user_id in device_keys does not match the authenticated user", Codes.BAD_JSON
        )
    if value.get("device_id") != device_id:
        raise BadRequest(
            "device_id in device_keys does not match the authenticated device", Codes.BAD_JSON
        )
    algorithms = value.get("algorithms")
    if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
        raise BadRequest("device_keys.algorithms must be a list of strings", Codes.BAD_JSON)
    keys = value.get("keys")
    if not _string_map(keys):
        raise BadRequest("device_keys.keys must map key IDs to strings", Codes.BAD_JSON)
    signing_key_id = f"ed25519:{device_id}"
    if signing_key_id not in keys or f"curve25519:{device_id}" not in keys:
        raise BadRequest(
            f"device_keys.keys must hold ed25519:{device_id} and curve25519:{device_id}",
            Codes.INVALID_PARAM,
        )
    if "signatures" not in value:
        raise InvalidSignature("device_keys are not signed")
    if not _signatures_ok(value["signatures"]):
        raise BadRequest("device_keys.signatures is malformed", Codes.BAD_JSON)
    check_signed_by(value, user_id, signing_key_id, keys[signing_key_id], "device_keys")
    return {k: v for k, v in value.items() if k != "unsigned"}


def device_signing_key(device_keys: Mapping[str, Any] | None, device_id: str) -> str | None:
    """The device's ed25519 public key from its (stored or uploaded) device keys."""
    if device_keys is None:
        return None
    keys = device_keys.get("keys")
    key = keys.get(f"ed25519:{device_id}") if isinstance(keys, dict) else None
    return key if isinstance(key, str) else None


# --- one-time and fallback keys ------------------------------------------------------------
def _parse_key_map(value: Any, field: str) -> list[UploadedKey]:
    if value is None:
        return []
    if not isinstance(value, dict):
        raise BadRequest(f"{field} must be an object", Codes.BAD_JSON)
    parsed: list[UploadedKey] = []
    for name, key in value.items():
        algorithm, sep, key_id = name.partition(":")
        if not sep or ":" in key_id or not _is_clean_id(algorithm) or not _is_clean_id(key_id):
            raise BadRequest(
                f"Invalid {field} key {name!r}: expected <algorithm>:<key_id>", Codes.BAD_JSON
            )
        if isinstance(key, dict):
            if not isinstance(key.get("key"), str):
                raise BadRequest(f"{field}[{name!r}].key must be a string", Codes.BAD_JSON)
            if "signatures" not in key:
                raise InvalidSignature(f"{field}[{name!r}] is not signed")
            if not _signatures_ok(key["signatures"]):
                raise BadRequest(f"{field}[{name!r}].signatures is malformed", Codes.BAD_JSON)
            if "fallback" in key and not isinstance(key["fallback"], bool):
                raise BadRequest(f"{field}[{name!r}].fallback must be a boolean", Codes.BAD_JSON)
        elif not isinstance(key, str):
            raise BadRequest(f"{field}[{name!r}] must be a string or an object", Codes.BAD_JSON)
        parsed.append(UploadedKey(algorithm, key_id, key))
    return parsed


def check_key_signatures(
    keys: list[UploadedKey], user_id: str, device_id: str, signing_key: str | None, field: str
) -> None:
    """Signed one-time/fallback keys must carry the device's signature. Unsigned (string)
    keys carry none to check."""
    for key in keys:
        if not isinstance(key.key, dict):
            continue
        what = f"{field} {key.algorithm}:{key.key_id}"
        if signing_key is None:
            raise InvalidSignature(f"No device key to check the signature on {what} with")
        check_signed_by(key.key, user_id, f"ed25519:{device_id}", signing_key, what)


def parse_key_upload(
    body: Mapping[str, Any],
    user_id: str,
    device_id: str,
    stored_device_keys: Mapping[str, Any] | None,
) -> KeyUpload:
    """Check a /keys/upload body. Signed one-time and fallback keys are checked against the
    device keys uploaded with them, else against ``stored_device_keys``."""
    device_keys = None
    if "device_keys" in body:
        device_keys = parse_device_keys(body["device_keys"], user_id, device_id)
    one_time_keys = _parse_key_map(body.get("one_time_keys"), "one_time_keys")
    if len(one_time_keys) > MAX_ONE_TIME_KEYS_PER_UPLOAD:
        raise TooManyKeys(
            f"At most {MAX_ONE_TIME_KEYS_PER_UPLOAD} one-time keys may be uploaded at once"
        )
    fallback_keys = _parse_key_map(body.get("fallback_keys"), "fallback_keys")
    algorithms = [k.algorithm for k in fallback_keys]
    if len(set(algorithms)) != len(algorithms):
        raise BadRequest("At most one fallback key per algorithm", Codes.INVALID_PARAM)
    signing_key = device_signing_key(device_keys or stored_device_keys, device_id)
    check_key_signatures(one_time_keys, user_id, device_id, signing_key, "one-time key")
    check_key_signatures(fallback_keys, user_id, device_id, signing_key, "fallback key")
    return KeyUpload(device_keys, one_time_keys, fallback_keys)


def same_one_time_key(stored: Any, uploaded: str | dict[str, Any]) -> bool:
    """Whether an upload repeats a stored one-time key: equal, signatures aside (a client may
    sign the same key again differently)."""
    if not isinstance(stored, dict) or not isinstance(uploaded, dict):
        return bool(stored == uploaded)
    strip = ("signatures",)
    return {k: v for k, v in stored.items() if k not in strip} == {
        k: v for k, v in uploaded.items() if k not in strip
    }


# --- cross-signing keys ---------------------------------------------------------------------
def cross_signing_public_key(key: Mapping[str, Any]) -> tuple[str, str]:
    """``(key_id, public_key)`` of a cross-signing key with exactly one ed25519 key."""
    keys = key.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        raise BadRequest("A cross-signing key must hold exactly one key", Codes.INVALID_PARAM)
    ((key_id, public_key),) = keys.items()
    algorithm, _, name = key_id.partition(":")
    if algorithm != "ed25519" or not isinstance(public_key, str) or name != public_key:
        raise BadRequest(
            "A cross-signing key must be ed25519:<public key> → <public key>", Codes.INVALID_PARAM
        )
    ed25519_verify_key(public_key)
    return key_id, public_key


def parse_cross_signing_key(
    value: Any,
    user_id: str,
    key_type: str,
    master_key: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A cross-signing key of ``user_id`` with usage ``key_type``; the self-signing and
    user-signing keys must be signed by ``master_key``."""
    if not isinstance(value, dict):
        raise BadRequest(f"{key_type} key must be an object", Codes.BAD_JSON)
    usage = value.get("usage")
    for required in ("user_id", "usage", "keys"):
        if value.get(required) is None:
            raise BadRequest(f"Invalid {key_type} key: {required} is missing", Codes.MISSING_PARAM)
    if value.get("user_id") != user_id:
        raise BadRequest(f"Invalid {key_type} key: user_id must be yours", Codes.INVALID_PARAM)
    if not isinstance(usage, list) or not all(isinstance(u, str) for u in usage):
        raise BadRequest(f"Invalid {key_type} key: usage must be a list", Codes.INVALID_PARAM)
    if key_type not in usage:
        raise BadRequest(f"Invalid {key_type} key: usage must name it", Codes.INVALID_PARAM)
    if "signatures" in value and not _signatures_ok(value["signatures"]):
        raise BadRequest(f"Invalid {key_type} key: signatures malformed", Codes.BAD_JSON)
    cross_signing_public_key(value)
    if master_key is not None:
        master_key_id, master_public = cross_signing_public_key(master_key)
        check_signed_by(value, user_id, master_key_id, master_public, f"the {key_type} key")
    return {k: v for k, v in value.items() if k != "unsigned"}


# --- /keys/signatures/upload ------------------------------------------------------------------
def parse_signatures_upload(body: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """``{user_id: {key_id: signed object}}`` (key_id: a device ID or a master public key)."""
    if not isinstance(body, dict):
        raise BadRequest("Content must be a JSON object", Codes.BAD_JSON)
    for user_id, objects in body.items():
        if user_id_error(user_id, historical=True) or not isinstance(objects, dict):
            raise BadRequest("Invalid parameter", Codes.INVALID_PARAM)
        for key_id, obj in objects.items():
            if not _is_clean_id(key_id) or not isinstance(obj, dict):
                raise BadRequest("Invalid parameter", Codes.INVALID_PARAM)
    return body


def strip_signatures(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The signed part of a key: what its signatures cover."""
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def new_signature(
    signed: Mapping[str, Any], stored: Mapping[str, Any], signer_user_id: str, signer_key_id: str
) -> str:
    """The signature by ``signer_key_id`` an uploaded copy of ``stored`` carries (400 if the
    copy differs from what is stored or carries no such signature). Not verified here."""
    if strip_signatures(signed) != strip_signatures(stored):
        raise BadRequest("Key does not match the stored key", Codes.INVALID_PARAM)
    signatures = signed.get("signatures")
    by_user = signatures.get(signer_user_id) if isinstance(signatures, dict) else None
    signature = by_user.get(signer_key_id) if isinstance(by_user, dict) else None
    if not isinstance(signature, str):
        raise InvalidSignature(f"No signature by {signer_key_id}")
    return signature
