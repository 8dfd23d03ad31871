"""The checks on a received PDU that need no room state (spec §8 steps 1-3 of
federation-minimum.md; server-server API "Checks performed on receipt of a PDU").

1. format for the room version (sizes, ``auth_events`` ≤ 10, ``prev_events`` ≤ 20, v6+ strict
   canonical JSON) — else the PDU is dropped;
2. signatures (through the keyring) — else dropped;
3. content hash — on a mismatch the *redacted* copy is kept and processed instead.

Auth checks, which need state, are in :mod:`homeserver.federation.received`.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Protocol

from homeserver.events.event import Event, InternalMetadata
from homeserver.events.hashes import check_content_hash
from homeserver.events.redaction import prune_event_dict
from homeserver.events.validation import EventValidationError, validate_pdu
from homeserver.federation.keyring import SignatureVerifyError
from homeserver.room_versions import RoomVersion

logger = logging.getLogger(__name__)

#: ``unsigned`` keys a remote server may hand us (Synapse keeps the same ones); anything else it
#: put there (``age``, ``redacted_because``…) is not trusted.
_KEPT_UNSIGNED = ("invite_room_state", "knock_room_state")


class PduRejected(Exception):
    """A received PDU was dropped or rejected; ``reason`` is safe to send back to its origin."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidPdu(PduRejected):
    """Not a well-formed event of the room's version (dropped)."""


class BadPduSignature(PduRejected):
    """The signature check failed (dropped)."""


class UnknownRoom(PduRejected):
    """The PDU names a room this server does not know (dropped)."""


class EventRejected(PduRejected):
    """Stored as rejected: it failed the auth rules."""


class EventVerifier(Protocol):
    """The keyring's part used here (homeserver.federation.keyring.Keyring)."""

    async def verify_event(
        self, event: Event, *, check_authorising_server: bool = True
    ) -> None: ...


def _strip_unsigned(pdu: dict[str, Any]) -> dict[str, Any]:
    unsigned = pdu.get("unsigned")
    if "unsigned" not in pdu:
        return pdu
    pdu = dict(pdu)
    kept = (
        {k: unsigned[k] for k in _KEPT_UNSIGNED if k in unsigned}
        if isinstance(unsigned, dict) and pdu.get("type") == "m.room.member"
        else {}
    )
    if kept:
        pdu["unsigned"] = kept
    else:
        del pdu["unsigned"]
    return pdu


def parse_pdu(room_version: RoomVersion, pdu: Any) -> Event:
    """Step 1: the PDU as an :class:`Event` of ``room_version``, or :class:`InvalidPdu`.

    A PDU over the byte-length limits of old room versions (``soft`` validation failures) comes
    back marked rejected rather than dropped, as Synapse does, so old rooms stay convergent."""
    if not isinstance(pdu, dict):
        raise InvalidPdu("PDU is not a JSON object")
    rejected_reason: str | None = None
    try:
        validate_pdu(room_version, pdu)
    except EventValidationError as e:
        if not e.soft:
            raise InvalidPdu(f"invalid PDU: {e.reason}") from None
        rejected_reason = e.reason
    # Our own copy: the event is kept, and nothing the caller does later may change it.
    pdu = _strip_unsigned(copy.deepcopy(pdu))
    try:
        event = Event(pdu, room_version)
    except ValueError as e:  # no usable event ID
        raise InvalidPdu(f"invalid PDU: {e}") from None
    event.internal.rejected_reason = rejected_reason
    return event


def redacted_copy(event: Event) -> Event:
    """Step 3 for a content hash mismatch: the redacted form, same event ID, flagged redacted."""
    pruned = prune_event_dict(event.room_version, event.pdu)
    return Event(
        pruned,
        event.room_version,
        event_id=event.event_id,
        internal=InternalMetadata(rejected_reason=event.internal.rejected_reason, redacted=True),
    )


def check_hash(event: Event) -> Event:
    """Step 3: ``event``, or its redacted copy when the content hash does not match."""
    if check_content_hash(event.pdu):
        return event
    logger.info("content hash mismatch on %s: keeping the redacted copy", event.event_id)
    return redacted_copy(event)


async def check_pdu(
    room_version: RoomVersion,
    pdu: Any,
    keyring: EventVerifier,
    *,
    check_authorising_server: bool = True,
) -> Event:
    """Steps 1-3. Raises :class:`InvalidPdu` or :class:`BadPduSignature`.
    ``check_authorising_server=False``: a restricted join's authorising server is us, about to
    sign it (send_join), so its signature is not there yet."""
    event = parse_pdu(room_version, pdu)
    try:
        await keyring.verify_event(event, check_authorising_server=check_authorising_server)
    except SignatureVerifyError as e:
        raise BadPduSignature(f"signature check failed: {e}") from None
    return check_hash(event)
