"""The pure part of building an event: from a draft, the room's state and its forward extremities,
produce a hashed, signed, ID'd event that passes the auth rules, or refuse it.

The caller (``rooms/sender.py``) reads the state and extremities from storage and persists the
result; nothing here does I/O, so every step can be tested alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from homeserver.auth.rules import check_auth_rules
from homeserver.auth.selection import auth_types_for_event
from homeserver.crypto.base64 import encode_base64
from homeserver.crypto.hashes import add_content_hash, compute_reference_hash
from homeserver.crypto.signing import sign_event
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.events.ids import new_opaque_event_id
from homeserver.events.state_keys import CREATE_KEY, StateKey
from homeserver.events.validation import MAX_PREV_EVENTS, validate_pdu
from homeserver.room_versions import RoomVersion


@dataclass(frozen=True, slots=True)
class Signer:
    server_name: str
    signing_key: SigningKey


def choose_prev_events(extremities: Sequence[Event]) -> list[Event]:
    """At most 20 prev events, the deepest first, as the spec caps ``prev_events``."""
    if len(extremities) <= MAX_PREV_EVENTS:
        return list(extremities)
    return sorted(extremities, key=lambda e: e.depth, reverse=True)[:MAX_PREV_EVENTS]


def select_auth_events(
    room_version: RoomVersion, draft: EventDraft, state: Mapping[StateKey, Event]
) -> list[Event]:
    wanted = auth_types_for_event(
        room_version, draft.type, draft.sender, draft.state_key, draft.content
    )
    chosen: list[Event] = []
    for key in wanted:
        event = state.get(key)
        if event is not None and event not in chosen:
            chosen.append(event)
    return chosen


def _reference(room_version: RoomVersion, event: Event) -> Any:
    if room_version.event_refs_carry_hashes:
        digest = compute_reference_hash(room_version, event.pdu)
        return [event.event_id, {"sha256": encode_base64(digest)}]
    return event.event_id


def build_event(
    room_version: RoomVersion,
    signer: Signer,
    draft: EventDraft,
    *,
    room_id: str | None,
    state: Mapping[StateKey, Event],
    prev_events: Sequence[Event],
    origin_server_ts: int,
) -> Event:
    """Build, hash, sign and authorise one event.

    ``state`` is the room's state before the event (empty for a create event); ``room_id`` is
    None only for a v12 create event, whose ID names the room. Raises
    :class:`~homeserver.events.validation.EventValidationError` for a malformed event and
    :class:`~homeserver.auth.rules.AuthError` for one the auth rules refuse.
    """
    prev = choose_prev_events(prev_events)
    auth = select_auth_events(room_version, draft, state)
    depth = min(max((e.depth for e in prev), default=0) + 1, room_version.max_depth)
    pdu: dict[str, Any] = {
        "type": draft.type,
        "sender": draft.sender,
        "content": draft.content,
        "depth": depth,
        "origin_server_ts": origin_server_ts,
        "prev_events": [_reference(room_version, e) for e in prev],
        "auth_events": [_reference(room_version, e) for e in auth],
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
    add_content_hash(pdu)
    sign_event(room_version, pdu, signer.server_name, signer.signing_key)
    validate_pdu(room_version, pdu)
    event = Event(pdu, room_version)
    auth_map = {e.state_tuple: e for e in auth}
    # v12 never cites the create event in auth_events, but its rules still read it.
    create = state.get(CREATE_KEY)
    if create is not None:
        auth_map[CREATE_KEY] = create
    check_auth_rules(room_version, event, auth_map)
    return event
