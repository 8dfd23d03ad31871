"""Content hashes and reference hashes of events (spec: "Signing events"): event-specific, so
they live with the events and their redaction; `crypto/` keeps the format-agnostic JSON parts."""

from __future__ import annotations

import hashlib
from typing import Any

from homeserver.crypto.base64 import decode_base64, encode_base64
from homeserver.crypto.canonical_json import encode_canonical_json
from homeserver.events.redaction import prune_event_dict
from homeserver.room_versions import RoomVersion

_NOT_HASHED = ("unsigned", "signatures", "hashes")


def compute_content_hash(pdu: dict[str, Any], *, plain: bool = False) -> bytes:
    """sha256 over the canonical JSON of the event without unsigned, signatures and hashes.
    ``plain``: see :func:`~homeserver.crypto.canonical_json.encode_canonical_json`."""
    stripped = {k: v for k, v in pdu.items() if k not in _NOT_HASHED}
    return hashlib.sha256(encode_canonical_json(stripped, plain=plain)).digest()


def add_content_hash(pdu: dict[str, Any], *, plain: bool = False) -> None:
    pdu["hashes"] = {"sha256": encode_base64(compute_content_hash(pdu, plain=plain))}


def check_content_hash(pdu: dict[str, Any]) -> bool:
    """True if ``hashes.sha256`` matches the event's content."""
    hashes = pdu.get("hashes")
    if not isinstance(hashes, dict) or not isinstance(hashes.get("sha256"), str):
        return False
    try:
        expected = decode_base64(hashes["sha256"])
    except ValueError:
        return False
    return expected == compute_content_hash(pdu)


def redacted_bytes(room_version: RoomVersion, pdu: dict[str, Any], *, plain: bool = False) -> bytes:
    """The canonical JSON of the redacted event without ``signatures`` and ``unsigned``: what
    its reference hash hashes, and also what its signatures cover (spec: "Signing events"), so
    a builder that signed these bytes can hash them for the event's ID. ``plain``: ``pdu`` was
    found :func:`~homeserver.crypto.canonical_json.is_plain` (so is any part of it)."""
    redacted = prune_event_dict(room_version, pdu)
    redacted.pop("signatures", None)
    redacted.pop("unsigned", None)  # redaction drops it already; the definition names it
    return encode_canonical_json(redacted, plain=plain)


def compute_reference_hash(room_version: RoomVersion, pdu: dict[str, Any]) -> bytes:
    """sha256 over the redacted event without signatures and unsigned."""
    return hashlib.sha256(redacted_bytes(room_version, pdu)).digest()
