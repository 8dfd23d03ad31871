"""Event IDs and v12 room IDs, per ``RoomVersion.event_id_format``."""

from __future__ import annotations

import secrets
import string
from typing import Any

from homeserver.crypto.base64 import encode_base64
from homeserver.events.hashes import compute_reference_hash
from homeserver.room_versions import EventIdFormat, RoomVersion

_OPAQUE_ALPHABET = string.ascii_letters + string.digits


#: bytes below this map evenly onto the alphabet (4 × 62); the rest are drawn again.
_OPAQUE_LIMIT = 256 - 256 % len(_OPAQUE_ALPHABET)


def random_opaque(length: int = 18) -> str:
    """``length`` characters drawn uniformly from letters and digits: one read of the system's
    random source for the lot (``secrets.choice`` per character made a call each)."""
    chars: list[str] = []
    while len(chars) < length:
        for byte in secrets.token_bytes(length + 8):
            if byte < _OPAQUE_LIMIT:
                chars.append(_OPAQUE_ALPHABET[byte % len(_OPAQUE_ALPHABET)])
                if len(chars) == length:
                    break
    return "".join(chars)


def new_opaque_event_id(server_name: str) -> str:
    """A fresh ``$opaque:server`` ID for room versions whose events carry their own ID."""
    return f"${random_opaque()}:{server_name}"


def compute_event_id(room_version: RoomVersion, pdu: dict[str, Any]) -> str:
    """The event ID of ``pdu``: carried in it (v1, v2) or its reference hash (v3+)."""
    fmt = room_version.event_id_format
    if fmt is EventIdFormat.OPAQUE_WITH_DOMAIN:
        event_id = pdu.get("event_id")
        if not isinstance(event_id, str):
            raise ValueError("event has no event_id")
        return event_id
    return event_id_of_reference_hash(room_version, compute_reference_hash(room_version, pdu))


def event_id_of_reference_hash(room_version: RoomVersion, digest: bytes) -> str:
    """The ID of a v3+ event whose reference hash is ``digest``."""
    urlsafe = room_version.event_id_format is EventIdFormat.REFERENCE_HASH_URLSAFE
    return "$" + encode_base64(digest, urlsafe=urlsafe)


def room_id_from_create_event_id(create_event_id: str) -> str:
    """v12: the room ID is the create event's ID with ``!`` for ``$``."""
    return "!" + create_event_id[1:]


def new_room_id(server_name: str) -> str:
    """A random ``!opaque:server`` room ID (v1-v11)."""
    return f"!{random_opaque()}:{server_name}"
