"""Signing and verifying events: the signature covers the event's redacted form (per room
version), so a redaction never invalidates it (spec: "Signing events")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nacl.signing import SigningKey, VerifyKey

from homeserver.crypto.signing import key_id, signature_of, signatures_of, verify_json
from homeserver.events.hashes import redacted_bytes
from homeserver.events.redaction import prune_event_dict
from homeserver.room_versions import RoomVersion


def sign_event(
    room_version: RoomVersion,
    pdu: dict[str, Any],
    server_name: str,
    signing_key: SigningKey,
    *,
    plain: bool = False,
) -> bytes:
    """Sign the redacted form of ``pdu`` and store the signature in ``pdu`` (in place).

    ``pdu`` must already carry its content hash. Returns the signed bytes
    (:func:`~homeserver.events.hashes.redacted_bytes`), which a caller may hash for the
    reference hash instead of encoding the event again.
    """
    signed = redacted_bytes(room_version, pdu, plain=plain)
    _put_signature(pdu, server_name, signing_key, signature_of(signing_key, signed))
    return signed


def _put_signature(
    pdu: dict[str, Any], server_name: str, signing_key: SigningKey, signature: str
) -> None:
    pdu.setdefault("signatures", {}).setdefault(server_name, {})[key_id(signing_key)] = signature


#: stands in for a signature until :meth:`DeferredSignatures.sign` writes the real one: the
#: same length (an ed25519 signature is 86 characters of unpadded base64), so the event's size
#: checks see the size it will have.
PLACEHOLDER_SIGNATURE = "A" * 86


class DeferredSignatures:
    """Events of one batch assembled with their signatures to come, signed together at the end
    (in parallel, :func:`~homeserver.crypto.signing.signatures_of`). An event's ID and
    reference hash do not cover its signatures, so the events after it can cite it before it is
    signed. Whoever makes one must call :meth:`sign` before the events leave its hands."""

    __slots__ = ("_pending", "server_name", "signing_key")

    def __init__(self, server_name: str, signing_key: SigningKey) -> None:
        self.server_name = server_name
        self.signing_key = signing_key
        self._pending: list[tuple[dict[str, Any], bytes]] = []

    def add(self, room_version: RoomVersion, pdu: dict[str, Any], *, plain: bool = False) -> bytes:
        """Hold a placeholder signature in ``pdu`` (with its content hash already) and remember
        to sign it; returns the bytes that will be signed (see :func:`sign_event`)."""
        signed = redacted_bytes(room_version, pdu, plain=plain)
        _put_signature(pdu, self.server_name, self.signing_key, PLACEHOLDER_SIGNATURE)
        self._pending.append((pdu, signed))
        return signed

    def __len__(self) -> int:
        return len(self._pending)

    def sign(self) -> None:
        """Replace every placeholder with the real signature."""
        pending, self._pending = self._pending, []
        signatures = signatures_of(self.signing_key, [signed for _, signed in pending])
        for (pdu, _), signature in zip(pending, signatures, strict=True):
            _put_signature(pdu, self.server_name, self.signing_key, signature)


def verify_event_signature(
    room_version: RoomVersion,
    pdu: Mapping[str, Any],
    server_name: str,
    key_id_: str,
    verify_key: VerifyKey,
) -> None:
    redacted = prune_event_dict(room_version, dict(pdu))
    verify_json(redacted, server_name, key_id_, verify_key)
