"""Power levels: reading their values per room version, their defaults, and who holds which level.

Value formats (spec, room versions §6 "PL value formats"):

* v1-v5 accept JSON integers, integer strings such as ``" +0100 "`` and floats, which are
  truncated toward zero (``50.9`` -> 50, ``-1.5`` -> -1); infinities and NaN are refused.
* v6-v9 still accept integer strings, but no longer floats (canonical JSON forbids them anyway).
* v10+ accept JSON integers only.

JSON booleans are refused in every version even though Python treats them as ints: ``true`` is
not a number in JSON, and accepting it would make ``True`` mean power level 1.

Infinity: in v12 the room's creators hold :data:`INFINITE_POWER_LEVEL`, which is ``math.inf``.
A float rather than a dedicated class, because it already orders above every int (2^53-1 and
beyond), negates for "highest first" sort keys, and equals itself, so one creator never outranks
another (kicking a creator needs a strictly higher level, which nobody has). Every other level is
an ``int``; ``PowerLevel`` is the type of either.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final, TypeAlias

from homeserver.events.event import Event
from homeserver.room_versions import RoomVersion
from homeserver.types import is_valid_user_id

PowerLevel: TypeAlias = int | float

#: The power of a v12 room creator: above every integer level.
INFINITE_POWER_LEVEL: Final[float] = math.inf

#: Defaults of the top-level levels of ``m.room.power_levels`` when a key (or the whole event)
#: is absent. ``state_default`` is 50 even without a PL event, as Synapse does; the creator holds
#: 100 then, so only the creator can send state until a PL event exists.
DEFAULT_LEVELS: Final[Mapping[str, int]] = {
    "invite": 0,
    "kick": 50,
    "ban": 50,
    "redact": 50,
    "state_default": 50,
    "events_default": 0,
    "users_default": 0,
}

#: Defaults of ``notifications`` entries.
DEFAULT_NOTIFICATION_LEVELS: Final[Mapping[str, int]] = {"room": 50}

#: The creator's level in v1-v11 rooms that have no ``m.room.power_levels`` event yet.
CREATOR_LEVEL_WITHOUT_POWER_LEVELS: Final[int] = 100

#: The top-level keys whose changes the auth rules check, in the spec's order.
NAMED_LEVELS: Final[tuple[str, ...]] = (
    "users_default",
    "events_default",
    "state_default",
    "ban",
    "redact",
    "kick",
    "invite",
)

# Spec: base-10, optional leading zeros, one optional sign, surrounding whitespace. Written out
# rather than trusting int(), which also takes "1_000" and non-ASCII digits.
_INTEGER_STRING = re.compile(r"[ \t\n\r\f\v]*([+-]?[0-9]+)[ \t\n\r\f\v]*")


def parse_power_level(room_version: RoomVersion, value: object) -> int | None:
    """The integer level ``value`` stands for in this room version, or None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if room_version.enforce_int_power_levels:
        return None
    if isinstance(value, str):
        match = _INTEGER_STRING.fullmatch(value)
        if match is None:
            return None
        try:
            return int(match.group(1))
        except ValueError:  # more digits than Python converts (sys.int_max_str_digits)
            return None
    if isinstance(value, float) and room_version.float_power_levels_allowed:
        return math.trunc(value) if math.isfinite(value) else None
    return None


def _read_level(room_version: RoomVersion, container: object, key: str) -> int | None:
    """A level from a PL object, None if absent or unreadable (so the caller's default applies)."""
    if not isinstance(container, Mapping) or key not in container:
        return None
    return parse_power_level(room_version, container[key])


def _content(power_levels_event: Event | None) -> Mapping[str, Any]:
    return power_levels_event.content if power_levels_event is not None else {}


def power_levels_content_error(room_version: RoomVersion, content: Mapping[str, Any]) -> str | None:
    """Why ``content`` is not acceptable as ``m.room.power_levels`` content, or None.

    The spec only demands valid ``users`` before v10. We also refuse, in every version, any level
    we could not read: Synapse fails on such values (``int()`` raises), so accepting them would
    fork the room, and no later rule could say what an unreadable level means.
    """
    for name in NAMED_LEVELS:
        if name in content and parse_power_level(room_version, content[name]) is None:
            return f"'{name}' is not a valid power level"
    # ``notifications`` only matters to auth from v6, so older rooms may carry anything there.
    maps = ["users", "events"]
    if room_version.limit_notifications_power_levels:
        maps.append("notifications")
    for field in maps:
        if field not in content:
            continue
        entries = content[field]
        if not isinstance(entries, Mapping):
            return f"'{field}' is not an object"
        for key, value in entries.items():
            if field == "users" and not is_valid_user_id(key, historical=True):
                return f"'users' has an invalid user ID {key!r}"
            if parse_power_level(room_version, value) is None:
                return f"'{field}' has an invalid power level for {key!r}"
    return None


def room_creators(room_version: RoomVersion, create_event: Event) -> frozenset[str]:
    """The room's creators: ``content.creator`` (v1-v10), the create event's sender (v11), the
    sender plus ``content.additional_creators`` (v12)."""
    if not room_version.implicit_room_creator:
        creator = create_event.content.get("creator")
        return frozenset((creator,)) if isinstance(creator, str) else frozenset()
    creators = {create_event.sender}
    if room_version.has_additional_creators:
        additional = create_event.content.get("additional_creators")
        if isinstance(additional, list):
            creators.update(user for user in additional if isinstance(user, str))
    return frozenset(creators)


def named_power_level(
    room_version: RoomVersion, name: str, power_levels_event: Event | None
) -> int:
    """One of :data:`NAMED_LEVELS` (``invite``, ``kick``, ``ban``, ``redact``, the defaults)."""
    level = _read_level(room_version, _content(power_levels_event), name)
    return level if level is not None else DEFAULT_LEVELS[name]


def notification_power_level(
    room_version: RoomVersion, key: str, power_levels_event: Event | None
) -> int:
    """The level needed to trigger the ``key`` notification (``room`` for @room)."""
    level = _read_level(room_version, _content(power_levels_event).get("notifications"), key)
    if level is not None:
        return level
    return DEFAULT_NOTIFICATION_LEVELS.get(key, DEFAULT_LEVELS["state_default"])


def required_power_level(
    room_version: RoomVersion,
    event_type: str,
    is_state: bool,
    power_levels_event: Event | None,
) -> int:
    """The level needed to send an event of ``event_type``: ``events[type]``, else
    ``state_default`` for state events and ``events_default`` for the rest."""
    level = _read_level(room_version, _content(power_levels_event).get("events"), event_type)
    if level is not None:
        return level
    default = "state_default" if is_state else "events_default"
    return named_power_level(room_version, default, power_levels_event)


def user_power_level(
    room_version: RoomVersion,
    user_id: str,
    create_event: Event | None,
    power_levels_event: Event | None,
) -> PowerLevel:
    """The power level of ``user_id``: :data:`INFINITE_POWER_LEVEL` for a v12 creator; else
    ``users[user_id]``, falling back to ``users_default``; without a PL event, 100 for the creator
    (v1-v11) and 0 for everyone else."""
    creators = (
        room_creators(room_version, create_event) if create_event is not None else frozenset()
    )
    if room_version.creators_have_infinite_power and user_id in creators:
        return INFINITE_POWER_LEVEL
    if power_levels_event is None:
        return CREATOR_LEVEL_WITHOUT_POWER_LEVELS if user_id in creators else 0
    level = _read_level(room_version, power_levels_event.content.get("users"), user_id)
    if level is not None:
        return level
    return named_power_level(room_version, "users_default", power_levels_event)


def power_levels_change_error(
    room_version: RoomVersion,
    old_content: Mapping[str, Any],
    new_content: Mapping[str, Any],
    sender: str,
    sender_power: PowerLevel,
) -> str | None:
    """Why ``sender`` (at ``sender_power``) may not replace ``old_content`` by ``new_content``,
    or None. Values are compared as parsed levels, so ``"50"`` -> ``50`` is no change."""
    for name in NAMED_LEVELS:
        old, new = (
            _level_in(room_version, old_content, name),
            _level_in(room_version, new_content, name),
        )
        if old != new and _above(sender_power, old, new):
            return f"cannot change '{name}' from {old} to {new} beyond own level"

    # Entries of ``events`` (and ``notifications`` from v6): the old value of a changed or
    # removed entry and the new value of an added or changed one must be within reach.
    fields = (
        ["events", "notifications"] if room_version.limit_notifications_power_levels else ["events"]
    )
    for field in fields:
        old_map, new_map = _map_in(old_content, field), _map_in(new_content, field)
        for key in old_map.keys() | new_map.keys():
            old, new = _level_in(room_version, old_map, key), _level_in(room_version, new_map, key)
            if old != new and _above(sender_power, old, new):
                return f"cannot change {field}[{key!r}] from {old} to {new} beyond own level"

    # Users: one may not touch anyone at or above one's own level (except oneself, to step
    # down), nor lift anyone (oneself included) above it.
    old_users, new_users = _map_in(old_content, "users"), _map_in(new_content, "users")
    for user in old_users.keys() | new_users.keys():
        old, new = (
            _level_in(room_version, old_users, user),
            _level_in(room_version, new_users, user),
        )
        if old == new:
            continue
        if user != sender and old is not None and old >= sender_power:
            return f"cannot change the level of {user}, who is not below the sender"
        if new is not None and new > sender_power:
            return f"cannot raise {user} to {new}, above own level"
    return None


def _map_in(content: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = content.get(field)
    return value if isinstance(value, Mapping) else {}


def _level_in(room_version: RoomVersion, container: Mapping[str, Any], key: str) -> int | None:
    return parse_power_level(room_version, container[key]) if key in container else None


def _above(sender_power: PowerLevel, *levels: int | None) -> bool:
    return any(level is not None and level > sender_power for level in levels)
