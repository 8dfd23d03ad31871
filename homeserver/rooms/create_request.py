"""Parsing and validating a ``POST /createRoom`` body into a typed request.

Every field is checked here, before anything is written; each failure is a 400 naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from homeserver.errors import BadRequest, Codes
from homeserver.rooms.presets import Preset
from homeserver.types import user_id_error

MAX_ALIAS_LOCALPART_BYTES = 200
# Neither the spec nor Synapse bounds these lists; every entry becomes an event signed and
# stored in the one createRoom transaction, so an unbounded list stalls the server (10,000
# invites took seconds of CPU). Far above what a client creating a room by hand sends.
MAX_INVITES = 100
MAX_INVITE_3PID = 100
MAX_INITIAL_STATE = 500


@dataclass(frozen=True, slots=True)
class InitialStateEvent:
    type: str
    state_key: str
    content: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ThirdPartyInvite:
    id_server: str
    id_access_token: str
    medium: str
    address: str


@dataclass(frozen=True, slots=True)
class CreateRoomRequest:
    preset: Preset
    visibility: str = "private"
    room_alias_name: str | None = None
    name: str | None = None
    topic: str | None = None
    invite: tuple[str, ...] = ()
    invite_3pid: tuple[ThirdPartyInvite, ...] = ()
    room_version: str | None = None
    creation_content: dict[str, Any] = field(default_factory=dict)
    initial_state: tuple[InitialStateEvent, ...] = ()
    is_direct: bool = False
    power_level_content_override: dict[str, Any] | None = None


def _invalid(field_name: str, message: str) -> BadRequest:
    return BadRequest(f"{field_name}: {message}", Codes.INVALID_PARAM)


def _missing(field_name: str) -> BadRequest:
    return BadRequest(f"{field_name}: is required", Codes.MISSING_PARAM)


def _bounded(field_name: str, value: list[Any] | None, most: int) -> list[Any]:
    if value is not None and len(value) > most:
        raise _invalid(field_name, f"at most {most} entries are allowed, not {len(value)}")
    return value or []


def _optional(body: dict[str, Any], key: str, kind: type, kind_name: str) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadRequest(f"{key} must be {kind_name}", Codes.BAD_JSON)
    return value


def _parse_alias_localpart(value: str | None) -> str | None:
    if value is None:
        return None
    if not value or ":" in value or "#" in value or any(c.isspace() for c in value):
        raise _invalid("room_alias_name", "must be a non-empty local part without ':' or spaces")
    if len(value.encode("utf-8")) > MAX_ALIAS_LOCALPART_BYTES:
        raise _invalid("room_alias_name", "is too long")
    return value


def _parse_invites(value: list[Any] | None) -> tuple[str, ...]:
    invites: list[str] = []
    for index, user_id in enumerate(_bounded("invite", value, MAX_INVITES)):
        reason = user_id_error(user_id) if isinstance(user_id, str) else "not a string"
        if reason:
            raise _invalid(f"invite[{index}]", reason)
        if user_id not in invites:
            invites.append(user_id)
    return tuple(invites)


def _parse_invite_3pid(value: list[Any] | None) -> tuple[ThirdPartyInvite, ...]:
    parsed: list[ThirdPartyInvite] = []
    for index, entry in enumerate(_bounded("invite_3pid", value, MAX_INVITE_3PID)):
        if not isinstance(entry, dict):
            raise BadRequest(f"invite_3pid[{index}] must be an object", Codes.BAD_JSON)
        values: dict[str, str] = {}
        for key in ("id_server", "id_access_token", "medium", "address"):
            item = entry.get(key)
            if item is None:
                raise _missing(f"invite_3pid[{index}].{key}")
            if not isinstance(item, str) or not item:
                raise _invalid(f"invite_3pid[{index}].{key}", "must be a non-empty string")
            values[key] = item
        parsed.append(ThirdPartyInvite(**values))
    return tuple(parsed)


def _parse_initial_state(value: list[Any] | None) -> tuple[InitialStateEvent, ...]:
    events: list[InitialStateEvent] = []
    for index, entry in enumerate(_bounded("initial_state", value, MAX_INITIAL_STATE)):
        where = f"initial_state[{index}]"
        if not isinstance(entry, dict):
            raise BadRequest(f"{where} must be an object", Codes.BAD_JSON)
        event_type = entry.get("type")
        state_key = entry.get("state_key", "")
        content = entry.get("content")
        if event_type is None:
            raise _missing(f"{where}.type")
        if not isinstance(event_type, str) or not event_type:
            raise _invalid(f"{where}.type", "must be a non-empty string")
        if not isinstance(state_key, str):
            raise _invalid(f"{where}.state_key", "must be a string")
        if content is None:
            raise _missing(f"{where}.content")
        if not isinstance(content, dict):
            raise _invalid(f"{where}.content", "must be an object")
        if event_type == "m.room.create":
            raise _invalid(f"{where}.type", "m.room.create belongs in creation_content")
        if event_type == "m.room.member":
            raise _invalid(f"{where}.type", "memberships cannot be initial state")
        events.append(InitialStateEvent(event_type, state_key, content))
    return tuple(events)


def parse_create_room_request(body: Any) -> CreateRoomRequest:
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object", Codes.BAD_JSON)
    visibility = _optional(body, "visibility", str, "a string") or "private"
    if visibility not in ("public", "private"):
        raise _invalid("visibility", "must be 'public' or 'private'")
    preset_name = _optional(body, "preset", str, "a string")
    if preset_name is None:
        preset = Preset.PUBLIC_CHAT if visibility == "public" else Preset.PRIVATE_CHAT
    else:
        try:
            preset = Preset(preset_name)
        except ValueError:
            raise _invalid("preset", f"unknown preset {preset_name!r}") from None
    room_version = _optional(body, "room_version", str, "a string")
    creation_content = _optional(body, "creation_content", dict, "an object") or {}
    override = _optional(body, "power_level_content_override", dict, "an object")
    is_direct = body.get("is_direct", False)
    if not isinstance(is_direct, bool):
        raise BadRequest("is_direct must be a boolean", Codes.BAD_JSON)
    return CreateRoomRequest(
        preset=preset,
        visibility=visibility,
        room_alias_name=_parse_alias_localpart(_optional(body, "room_alias_name", str, "a string")),
        name=_optional(body, "name", str, "a string"),
        topic=_optional(body, "topic", str, "a string"),
        invite=_parse_invites(_optional(body, "invite", list, "an array")),
        invite_3pid=_parse_invite_3pid(_optional(body, "invite_3pid", list, "an array")),
        room_version=room_version,
        creation_content=dict(creation_content),
        initial_state=_parse_initial_state(_optional(body, "initial_state", list, "an array")),
        is_direct=is_direct,
        power_level_content_override=dict(override) if override is not None else None,
    )
