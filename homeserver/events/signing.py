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


def sign_event(
    room_version: RoomVersion,
    pdu: dict[str, Any],
    server_name: str,
    signing_key: SigningKey,
) -> None:
    """Sign the redacted form of ``pdu`` and store the signature in ``pdu`` (in place).

    ``pdu`` must already carry its content hash.
    """
    redacted = prune_event_dict(room_version, pdu)
    redacted.pop("signatures", None)
    signature = signature_of(signing_key, encode_canonical_json(redacted))
    pdu.setdefault("signatures", {}).setdefault(server_name, {})[key_id(signing_key)] = signature


def verify_event_signature(
    room_version: RoomVersion,
    pdu: Mapping[str, Any],
    server_name: str,
    key_id_: str,
    verify_key: VerifyKey,
) -> None:
    redacted = prune_event_dict(room_version, dict(pdu))
    verify_json(redacted, server_name, key_id_, verify_key)
