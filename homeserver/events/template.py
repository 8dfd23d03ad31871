"""Membership templates of ``make_join`` / ``make_leave`` (spec: server-server API "Joining
Rooms"), both ways. Pure.

* The resident turns an event it built on its current state into a template by dropping what
  the joiner must make itself (``signatures``, ``hashes``, ``unsigned``, and the v1/v2
  ``event_id``, which names the server that creates the event).
* The joiner checks a template (room, sender, state key, type, membership) and makes its own
  event from it: its ``origin_server_ts``, content hash and signature.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from homeserver.events.builder import Signer
from homeserver.events.event import Event
from homeserver.events.hashes import add_content_hash
from homeserver.events.ids import new_opaque_event_id
from homeserver.events.signing import sign_event
from homeserver.events.validation import EventValidationError, validate_pdu
from homeserver.room_versions import RoomVersion

#: Keys the joining server computes itself.
_MADE_BY_JOINER = ("signatures", "hashes", "unsigned", "event_id")


class BadTemplate(ValueError):
    """The template from make_join / make_leave is not the event we asked for."""


def template_from_event(event: Event) -> dict[str, Any]:
    """The ``event`` of a make_join / make_leave answer, from an event built by the resident."""
    return {k: copy.deepcopy(v) for k, v in event.pdu.items() if k not in _MADE_BY_JOINER}


def check_template(
    template: Any, *, room_id: str, user_id: str, membership: str, room_version: RoomVersion
) -> dict[str, Any]:
    """Return ``template`` if it is a member event making ``user_id`` ``membership`` in
    ``room_id``; raise :class:`BadTemplate` otherwise."""
    if not isinstance(template, dict):
        raise BadTemplate("the template is not a JSON object")
    content = template.get("content")
    checks = (
        (template.get("type") == "m.room.member", "type is not m.room.member"),
        (template.get("room_id") == room_id, "room_id is not the room asked for"),
        (template.get("sender") == user_id, "sender is not the user"),
        (template.get("state_key") == user_id, "state_key is not the user"),
        (
            isinstance(content, dict) and content.get("membership") == membership,
            f"membership is not {membership}",
        ),
    )
    for ok, reason in checks:
        if not ok:
            raise BadTemplate(reason)
    if room_version.room_id_is_create_event_hash and template.get("type") == "m.room.create":
        raise BadTemplate("a create event is not a membership template")
    return template


def event_from_template(
    room_version: RoomVersion,
    signer: Signer,
    template: Mapping[str, Any],
    *,
    content: Mapping[str, Any],
    origin_server_ts: int,
) -> Event:
    """Our signed event from a checked template: ``content`` merged over the template's (as
    Synapse does: the membership stays the template's), our timestamp, hash and signature.
    Raises :class:`BadTemplate` if the result is not a well-formed event of this version."""
    pdu = {k: copy.deepcopy(v) for k, v in template.items() if k not in _MADE_BY_JOINER}
    template_content = template.get("content")
    merged = dict(template_content) if isinstance(template_content, dict) else {}
    membership = merged.get("membership")
    merged.update(content)
    merged["membership"] = membership
    pdu["content"] = merged
    pdu["origin_server_ts"] = origin_server_ts
    if "origin" in pdu:
        pdu["origin"] = signer.server_name
    if room_version.event_refs_carry_hashes:
        pdu["event_id"] = new_opaque_event_id(signer.server_name)
    add_content_hash(pdu)
    sign_event(room_version, pdu, signer.server_name, signer.signing_key)
    try:
        validate_pdu(room_version, pdu)
    except EventValidationError as e:
        raise BadTemplate(f"the template makes an invalid event: {e.reason}") from None
    return Event(pdu, room_version)
