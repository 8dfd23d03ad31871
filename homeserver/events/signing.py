"""Signing and verifying events: the signature covers the event's redacted form (per room
version), so a redaction never invalidates it (spec: "Signing events")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nacl.signing import SigningKey, VerifyKey

from homeserver.crypto.canonical_json import encode_canonical_json
from homeserver.crypto.signing import key_id, signature_of, verify_json
from homeserver.events.redaction import prune_event_dict
from homeserver.room_versions import RoomVersion


def redacted_signing_bytes(room_version: RoomVersion, pdu: dict[str, Any]) -> bytes:
    """The canonical JSON an event's signatures cover: its redacted form without
    ``signatures`` (and ``unsigned``, which redaction drops). Its sha256 is also the event's
    reference hash (spec: "Calculating the reference hash for an event")."""
    redacted = prune_event_dict(room_version, pdu)
    redacted.pop("signatures", None)
    return encode_canonical_json(redacted)


def sign_event(
    room_version: RoomVersion,
    pdu: dict[str, Any],
    server_name: str,
    signing_key: SigningKey,
) -> bytes:
    """Sign the redacted form of ``pdu`` and store the signature in ``pdu`` (in place).

    ``pdu`` must already carry its content hash. Returns the signed bytes
    (:func:`redacted_signing_bytes`), which a caller may hash for the reference hash instead
    of encoding the event again.
    """
    signed = redacted_signing_bytes(room_version, pdu)
    signature = signature_of(signing_key, signed)
    pdu.setdefault("signatures", {}).setdefault(server_name, {})[key_id(signing_key)] = signature
    return signed


def verify_event_signature(
    room_version: RoomVersion,
    pdu: Mapping[str, Any],
    server_name: str,
    key_id_: str,
    verify_key: VerifyKey,
) -> None:
    redacted = prune_event_dict(room_version, dict(pdu))
    verify_json(redacted, server_name, key_id_, verify_key)
