"""Format checks on a PDU before it is hashed, authorised or stored.

Each failure raises :class:`EventValidationError` naming its reason. ``soft`` failures are the
255-*byte* limits in room versions that predate v11: Synapse stores such events as rejected
rather than dropping them, so as not to break old rooms, and we do the same to stay convergent.
"""

from __future__ import annotations

from typing import Any

from homeserver.crypto.canonical_json import (
    NonCanonicalJSON,
    check_strict_canonical,
    encode_canonical_json,
)
from homeserver.room_versions import RoomVersion
from homeserver.types import event_id_error, room_id_error, user_id_error

MAX_PDU_BYTES = 65536
MAX_KEY_LENGTH = 255
MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10


class EventValidationError(ValueError):
    def __init__(self, reason: str, *, soft: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.soft = soft


def _require(pdu: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = pdu.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise EventValidationError(f"'{key}' is missing or not of the right type")
    return value


def check_size_limits(
    room_version: RoomVersion, pdu: dict[str, Any], *, plain: bool = False
) -> None:
    if len(encode_canonical_json(pdu, plain=plain)) > MAX_PDU_BYTES:
        raise EventValidationError(f"event is larger than {MAX_PDU_BYTES} bytes")
    for key in ("type", "state_key", "sender", "room_id", "event_id"):
        value = pdu.get(key)
        if not isinstance(value, str):
            continue
        if "\x00" in value:
            # These are stored as database text, which on PostgreSQL cannot hold NUL.
            raise EventValidationError(f"'{key}' contains NUL")
        if len(value) > MAX_KEY_LENGTH:
            raise EventValidationError(f"'{key}' is longer than {MAX_KEY_LENGTH} characters")
        if len(value.encode("utf-8")) > MAX_KEY_LENGTH:
            raise EventValidationError(
                f"'{key}' is longer than {MAX_KEY_LENGTH} bytes",
                soft=not room_version.strict_byte_size_limits,
            )


def _check_refs(room_version: RoomVersion, pdu: dict[str, Any], key: str, limit: int) -> None:
    refs = _require(pdu, key, list)
    if len(refs) > limit:
        raise EventValidationError(f"'{key}' has more than {limit} entries")
    for ref in refs:
        if room_version.event_refs_carry_hashes:
            if not (isinstance(ref, list) and len(ref) == 2 and isinstance(ref[1], dict)):
                raise EventValidationError(f"'{key}' entries must be [event_id, hashes]")
            ref = ref[0]
        reason = event_id_error(ref)
        if reason:
            raise EventValidationError(f"'{key}' holds an invalid event ID: {reason}")


def validate_pdu(room_version: RoomVersion, pdu: dict[str, Any], *, plain: bool = False) -> None:
    """Raise :class:`EventValidationError` if ``pdu`` is not a well-formed event of this version.
    ``plain``: the builder found ``pdu`` :func:`~homeserver.crypto.canonical_json.is_plain`,
    with ``safe_ints`` where the version demands strict canonical JSON."""
    if not isinstance(pdu, dict):
        raise EventValidationError("event is not a JSON object")
    if room_version.strict_canonical_json:
        try:
            check_strict_canonical(pdu, plain=plain)
        except NonCanonicalJSON as e:
            raise EventValidationError(f"event is not canonical JSON: {e}") from e
    event_type = _require(pdu, "type", str)
    sender = _require(pdu, "sender", str)
    _require(pdu, "content", dict)
    _require(pdu, "origin_server_ts", int)
    depth = _require(pdu, "depth", int)
    _require(pdu, "hashes", dict)
    if "signatures" in pdu:
        _require(pdu, "signatures", dict)
    if "state_key" in pdu:
        _require(pdu, "state_key", str)
    if not 0 <= depth <= room_version.max_depth:
        raise EventValidationError("'depth' is out of range")
    is_v12_create = room_version.room_id_is_create_event_hash and event_type == "m.room.create"
    if is_v12_create:
        if "room_id" in pdu:
            raise EventValidationError("a v12 create event must not have a 'room_id'")
    else:
        reason = room_id_error(_require(pdu, "room_id", str))
        if reason:
            raise EventValidationError(reason)
    reason = user_id_error(sender, historical=True)
    if reason:
        raise EventValidationError(f"'sender': {reason}")
    if room_version.event_refs_carry_hashes:
        reason = event_id_error(_require(pdu, "event_id", str))
        if reason:
            raise EventValidationError(reason)
    _check_refs(room_version, pdu, "prev_events", MAX_PREV_EVENTS)
    _check_refs(room_version, pdu, "auth_events", MAX_AUTH_EVENTS)
    check_size_limits(room_version, pdu, plain=plain)
