"""Room policy: ``encryption_enabled_by_default_for_room_type``,
``default_power_level_content_override`` and who may read the room directory
(``allow_public_rooms_without_auth``, ``allow_public_rooms_over_federation``)."""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from homeserver.config._reader import ConfigError, Reader

KEYS = frozenset(
    {
        "encryption_enabled_by_default_for_room_type",
        "default_power_level_content_override",
        "allow_public_rooms_without_auth",
        "allow_public_rooms_over_federation",
    }
)

PRESETS = frozenset({"private_chat", "trusted_private_chat", "public_chat"})


class EncryptionByDefault(enum.StrEnum):
    OFF = "off"
    #: Rooms whose preset makes them invite-only (private_chat, trusted_private_chat).
    INVITE = "invite"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class RoomsConfig:
    encryption_enabled_by_default_for_room_type: EncryptionByDefault
    #: preset name → power-levels content to merge over the preset's defaults. Read-only views;
    #: take a ``copy.deepcopy`` before building an event from one.
    default_power_level_content_override: Mapping[str, Mapping[str, Any]]
    #: ``/publicRooms`` answers clients without an access token (Synapse's default: false).
    allow_public_rooms_without_auth: bool = False
    #: other servers may read the directory (``/_matrix/federation/v1/publicRooms``).
    allow_public_rooms_over_federation: bool = False


def parse_rooms(reader: Reader) -> RoomsConfig:
    key = "encryption_enabled_by_default_for_room_type"
    raw = reader.raw(key, "off")
    # YAML 1.1 reads an unquoted ``off`` as false, so false must mean "off".
    if raw is False:
        raw = "off"
    try:
        encryption = EncryptionByDefault(raw)
    except ValueError:
        raise reader.error(key, f"must be off, invite or all, not {raw!r}") from None

    overrides: dict[str, Mapping[str, Any]] = {}
    section = reader.sub("default_power_level_content_override")
    for preset, content in section.data.items():
        path = section.key_path(str(preset))
        if preset not in PRESETS:
            raise ConfigError(path, f"unknown preset (known: {', '.join(sorted(PRESETS))})")
        if content is None:
            continue
        if not isinstance(content, Mapping):
            raise ConfigError(path, "must be a mapping of power-levels content")
        overrides[str(preset)] = MappingProxyType(copy.deepcopy(dict(content)))
    return RoomsConfig(
        encryption_enabled_by_default_for_room_type=encryption,
        default_power_level_content_override=MappingProxyType(overrides),
        allow_public_rooms_without_auth=reader.boolean("allow_public_rooms_without_auth", False),
        allow_public_rooms_over_federation=reader.boolean(
            "allow_public_rooms_over_federation", False
        ),
    )
