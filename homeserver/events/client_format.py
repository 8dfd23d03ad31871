"""Events as clients see them (the client-server API's ClientEvent), from stored PDUs.

Federation-only keys are dropped; ``event_id`` and ``room_id`` are always present; ``unsigned``
carries ``age`` (computed now, never stored) plus what the caller adds (``prev_content``,
``transaction_id``, ``redacted_because``). Redactions carry ``redacts`` both at the top level
and in ``content`` whatever the room version, as the spec asks for client compatibility.
"""

from __future__ import annotations

from typing import Any

from homeserver.events.event import Event
from homeserver.events.redaction import prune_event_dict

_CLIENT_KEYS = ("type", "sender", "content", "origin_server_ts", "state_key")


def serialize_event(
    event: Event,
    now_ms: int,
    *,
    redacted: bool = False,
    unsigned: dict[str, Any] | None = None,
    include_room_id: bool = True,
) -> dict[str, Any]:
    """The client form of ``event``. ``redacted`` shows its pruned content."""
    source = prune_event_dict(event.room_version, event.pdu) if redacted else event.pdu
    body: dict[str, Any] = {k: source[k] for k in _CLIENT_KEYS if k in source}
    body["event_id"] = event.event_id
    if include_room_id:
        body["room_id"] = event.room_id
    redacts = event.redacts
    if redacts is not None:
        body["redacts"] = redacts
        body["content"] = {**body.get("content", {}), "redacts": redacts}
    extra: dict[str, Any] = {"age": max(0, now_ms - event.origin_server_ts)}
    if unsigned:
        extra.update(unsigned)
    body["unsigned"] = extra
    return body


def strip_state_event(event: Event) -> dict[str, Any]:
    """The stripped form used for invite/knock state (``invite_room_state``)."""
    return {
        "type": event.type,
        "state_key": event.state_key,
        "sender": event.sender,
        "content": event.content,
    }
