"""The pure part of building an event: from a draft, its prev events and its auth events, produce
a hashed, signed, ID'd, validated event.

Choosing the auth events and checking the auth rules is ``rooms/event_builder.py``'s job (the
auth rules sit above the event model); nothing here does I/O, so every step can be tested alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from homeserver.crypto.base64 import encode_base64
from homeserver.crypto.canonical_json import is_plain
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.events.hashes import add_content_hash, compute_reference_hash
from homeserver.events.ids import event_id_of_reference_hash, new_opaque_event_id
from homeserver.events.signing import DeferredSignatures, sign_event
from homeserver.events.validation import MAX_PREV_EVENTS, validate_pdu
from homeserver.room_versions import EventIdFormat, RoomVersion


@dataclass(frozen=True, slots=True)
class Signer:
    server_name: str
    signing_key: SigningKey


def choose_prev_events(extremities: Sequence[Event]) -> list[Event]:
    """At most 20 prev events, the deepest first, as the spec caps ``prev_events``."""
    if len(extremities) <= MAX_PREV_EVENTS:
        return list(extremities)
    return sorted(extremities, key=lambda e: e.depth, reverse=True)[:MAX_PREV_EVENTS]


def _reference(room_version: RoomVersion, event: Event) -> Any:
    if room_version.event_refs_carry_hashes:
        digest = compute_reference_hash(room_version, event.pdu)
        return [event.event_id, {"sha256": encode_base64(digest)}]
    return event.event_id


def assemble_event(
    room_version: RoomVersion,
    signer: Signer,
    draft: EventDraft,
    *,
    room_id: str | None,
    prev_events: Sequence[Event],
    auth_events: Sequence[Event],
    origin_server_ts: int,
    deferred: DeferredSignatures | None = None,
) -> Event:
    """Hash, sign and validate one event citing these prev and auth events (not authorised).

    ``prev_events`` is already capped (:func:`choose_prev_events`); ``room_id`` is None only for
    a v12 create event, whose ID names the room. With ``deferred``, the signature is left to
    it (signed with the rest of the batch). Raises
    :class:`~homeserver.events.validation.EventValidationError` for a malformed event.
    """
    depth = min(max((e.depth for e in prev_events), default=0) + 1, room_version.max_depth)
    pdu: dict[str, Any] = {
        "type": draft.type,
        "sender": draft.sender,
        "content": draft.content,
        "depth": depth,
        "origin_server_ts": origin_server_ts,
        "prev_events": [_reference(room_version, e) for e in prev_events],
        "auth_events": [_reference(room_version, e) for e in auth_events],
    }
    if room_id is not None:
        pdu["room_id"] = room_id
    if draft.state_key is not None:
        pdu["state_key"] = draft.state_key
    if draft.redacts is not None:
        if room_version.top_level_redacts:
            pdu["redacts"] = draft.redacts
        else:
            pdu["content"] = {**draft.content, "redacts": draft.redacts}
    if room_version.event_refs_carry_hashes:
        pdu["event_id"] = new_opaque_event_id(signer.server_name)
    # One walk of the event for the four encodings below (each would walk it again): hashes
    # and signatures added later are plain too.
    plain = is_plain(pdu, safe_ints=room_version.strict_canonical_json)
    add_content_hash(pdu, plain=plain)
    if deferred is not None:
        signed = deferred.add(room_version, pdu, plain=plain)
    else:
        signed = sign_event(room_version, pdu, signer.server_name, signer.signing_key, plain=plain)
    validate_pdu(room_version, pdu, plain=plain)
    # The signed bytes are the reference hash's input: hashing them spares encoding the
    # event's redacted form a second time.
    event_id = (
        None  # carried in the event (v1, v2)
        if room_version.event_id_format is EventIdFormat.OPAQUE_WITH_DOMAIN
        else event_id_of_reference_hash(room_version, hashlib.sha256(signed).digest())
    )
    return Event(pdu, room_version, event_id=event_id)
