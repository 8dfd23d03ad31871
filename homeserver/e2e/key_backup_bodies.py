"""Reading /room_keys bodies and parameters (pure): backup versions, room keys, the version
query parameter, and the spec's rule for which copy of a room key a backup keeps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from homeserver.crypto.canonical_json import canonical_json_text
from homeserver.errors import BadRequest, Codes, MatrixError
from homeserver.storage.key_backup import BackedUpKey, SessionKey

#: The one backup algorithm of the spec; its ``auth_data`` must name the backup's public key.
MEGOLM_BACKUP_V1 = "m.megolm_backup.v1.curve25519-aes-sha2"

#: Sessions in one upload: clients send batches of 100-200 (matrix-js-sdk, matrix-rust-sdk).
MAX_SESSIONS_PER_REQUEST = 1000
#: A megolm session export encrypted for the backup is about 1 KiB.
MAX_SESSION_DATA_BYTES = 8 * 1024
#: ``auth_data`` holds a public key and the signatures of the user's devices.
MAX_AUTH_DATA_BYTES = 64 * 1024
MAX_ID_LENGTH = 255
MAX_ALGORITHM_LENGTH = 255
#: The largest integer a JavaScript client reads exactly.
MAX_SAFE_INTEGER = 2**53 - 1

#: Versions are the decimal numbers this server hands out; anything else names no backup.
_VERSION = re.compile(r"[0-9]{1,18}")


def parse_version(text: str) -> int | None:
    """A version path or query value as a number; None when it cannot name a version."""
    if _VERSION.fullmatch(text) is None:
        return None
    return int(text)


@dataclass(frozen=True, slots=True)
class VersionInfo:
    algorithm: str
    #: canonical JSON
    auth_data: str


def parse_version_info(body: dict[str, Any]) -> VersionInfo:
    """The ``algorithm`` and ``auth_data`` of ``POST``/``PUT /room_keys/version``."""
    algorithm = body.get("algorithm")
    if algorithm is None:
        raise BadRequest("Missing 'algorithm'", Codes.MISSING_PARAM)
    if not _is_clean(algorithm) or not algorithm or len(algorithm) > MAX_ALGORITHM_LENGTH:
        raise BadRequest("'algorithm' must be a non-empty string", Codes.BAD_JSON)
    auth_data = body.get("auth_data")
    if auth_data is None:
        raise BadRequest("Missing 'auth_data'", Codes.MISSING_PARAM)
    if not isinstance(auth_data, dict):
        raise BadRequest("'auth_data' must be an object", Codes.BAD_JSON)
    if algorithm == MEGOLM_BACKUP_V1 and not isinstance(auth_data.get("public_key"), str):
        raise BadRequest(
            f"'auth_data' of {MEGOLM_BACKUP_V1} must have a string 'public_key'", Codes.BAD_JSON
        )
    text = canonical_json_text(auth_data)
    if len(text.encode("utf-8")) > MAX_AUTH_DATA_BYTES:
        raise _too_large(f"'auth_data' may be at most {MAX_AUTH_DATA_BYTES} bytes")
    return VersionInfo(algorithm, text)


def parse_keys_upload(
    body: dict[str, Any], room_id: str | None, session_id: str | None
) -> dict[SessionKey, BackedUpKey]:
    """The keys of ``PUT /room_keys/keys[/{roomId}[/{sessionId}]]``: a body of ``rooms``, of
    ``sessions`` (one room) or one key (one session)."""
    if room_id is not None:
        check_id(room_id, "room ID")
    if session_id is not None:
        check_id(session_id, "session ID")
    if room_id is not None and session_id is not None:
        return {(room_id, session_id): _key(body, session_id)}
    if room_id is not None:
        return _sessions(body, room_id, {})
    rooms = _member(body, "rooms")
    keys: dict[SessionKey, BackedUpKey] = {}
    for rid, room in rooms.items():
        check_id(rid, "room ID")
        if not isinstance(room, dict):
            raise BadRequest(f"room {rid!r} must be an object", Codes.BAD_JSON)
        _sessions(room, rid, keys)
    return keys


def check_id(value: Any, what: str) -> str:
    if not _is_clean(value) or not value or len(value) > MAX_ID_LENGTH:
        raise BadRequest(f"Invalid {what}", Codes.INVALID_PARAM)
    return str(value)


def better_key(stored: BackedUpKey, uploaded: BackedUpKey) -> bool:
    """Whether ``uploaded`` replaces ``stored`` (spec, "Server-side key backups"): a verified
    key beats an unverified one; then the lower ``first_message_index`` (it decrypts more of
    the session); then the lower ``forwarded_count``. A tie keeps the stored copy."""

    def rank(key: BackedUpKey) -> tuple[int, int, int]:
        return (0 if key.is_verified else 1, key.first_message_index, key.forwarded_count)

    return rank(uploaded) < rank(stored)


def _sessions(
    body: dict[str, Any], room_id: str, into: dict[SessionKey, BackedUpKey]
) -> dict[SessionKey, BackedUpKey]:
    sessions = _member(body, "sessions")
    if len(into) + len(sessions) > MAX_SESSIONS_PER_REQUEST:
        raise _too_large(f"At most {MAX_SESSIONS_PER_REQUEST} sessions per request")
    for session_id, key in sessions.items():
        check_id(session_id, "session ID")
        into[(room_id, session_id)] = _key(key, session_id)
    return into


def _key(value: Any, session_id: str) -> BackedUpKey:
    if not isinstance(value, dict):
        raise BadRequest(f"the key of session {session_id!r} must be an object", Codes.BAD_JSON)
    first_message_index = _counter(value, "first_message_index")
    forwarded_count = _counter(value, "forwarded_count")
    is_verified = value.get("is_verified")
    if not isinstance(is_verified, bool):
        raise BadRequest("'is_verified' must be a boolean", Codes.BAD_JSON)
    session_data = value.get("session_data")
    if not isinstance(session_data, dict):
        raise BadRequest("'session_data' must be an object", Codes.BAD_JSON)
    text = canonical_json_text(session_data)
    if len(text.encode("utf-8")) > MAX_SESSION_DATA_BYTES:
        raise _too_large(f"'session_data' may be at most {MAX_SESSION_DATA_BYTES} bytes")
    return BackedUpKey(first_message_index, forwarded_count, is_verified, text)


def _counter(value: dict[str, Any], name: str) -> int:
    number = value.get(name)
    if (
        isinstance(number, bool)
        or not isinstance(number, int)
        or not 0 <= number <= MAX_SAFE_INTEGER
    ):
        raise BadRequest(f"'{name}' must be a non-negative integer", Codes.BAD_JSON)
    return number


def _member(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if value is None:
        raise BadRequest(f"Missing '{name}'", Codes.MISSING_PARAM)
    if not isinstance(value, dict):
        raise BadRequest(f"'{name}' must be an object", Codes.BAD_JSON)
    return value


def _is_clean(value: Any) -> bool:
    # NUL cannot be stored in (or looked up in) PostgreSQL text.
    return isinstance(value, str) and "\x00" not in value


def _too_large(message: str) -> MatrixError:
    return MatrixError(413, Codes.TOO_LARGE, message)
