"""Presets and default power levels for new rooms (spec "Creation", Synapse's defaults).

Pure data and functions: the room-creation service combines them with the request.
"""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass
from typing import Any

from homeserver.room_versions import RoomVersion


class Preset(enum.StrEnum):
    PRIVATE_CHAT = "private_chat"
    TRUSTED_PRIVATE_CHAT = "trusted_private_chat"
    PUBLIC_CHAT = "public_chat"


class EncryptionPolicy(enum.StrEnum):
    """``encryption_enabled_by_default_for_room_type``."""

    OFF = "off"
    INVITE = "invite"
    ALL = "all"


MEGOLM_ALGORITHM = "m.megolm.v1.aes-sha2"

#: Level of ``m.room.tombstone`` in new v12 rooms: above ``state_default`` so that by default only
#: creators can upgrade (a MUST of the spec for creator-power room versions).
V12_TOMBSTONE_LEVEL = 150


@dataclass(frozen=True, slots=True)
class PresetConfig:
    join_rule: str
    history_visibility: str
    #: None: send no ``m.room.guest_access`` (its absence means ``forbidden``), as Synapse.
    guest_access: str | None
    invitees_get_creator_power: bool
    #: top-level keys laid over the default power levels before any override.
    power_level_defaults: dict[str, Any]
    #: whether ``encryption_enabled_by_default_for_room_type: invite`` covers this preset.
    is_invite_only: bool


PRESETS: dict[Preset, PresetConfig] = {
    Preset.PRIVATE_CHAT: PresetConfig(
        join_rule="invite",
        history_visibility="shared",
        guest_access="can_join",
        invitees_get_creator_power=False,
        power_level_defaults={"invite": 0},
        is_invite_only=True,
    ),
    Preset.TRUSTED_PRIVATE_CHAT: PresetConfig(
        join_rule="invite",
        history_visibility="shared",
        guest_access="can_join",
        invitees_get_creator_power=True,
        power_level_defaults={"invite": 0},
        is_invite_only=True,
    ),
    Preset.PUBLIC_CHAT: PresetConfig(
        join_rule="public",
        history_visibility="shared",
        guest_access=None,
        invitees_get_creator_power=False,
        power_level_defaults={},
        is_invite_only=False,
    ),
}


def encryption_by_default(policy: EncryptionPolicy, preset: Preset) -> bool:
    if policy is EncryptionPolicy.ALL:
        return True
    return policy is EncryptionPolicy.INVITE and PRESETS[preset].is_invite_only


def default_power_levels(
    room_version: RoomVersion,
    preset: Preset,
    creator: str,
    invitees: list[str],
) -> dict[str, Any]:
    """The power-levels content a new room starts with, before any override."""
    infinite_creators = room_version.creators_have_infinite_power
    users: dict[str, int] = {} if infinite_creators else {creator: 100}
    if PRESETS[preset].invitees_get_creator_power and not infinite_creators:
        # v12 invitees of a trusted chat become additional creators instead (see plan).
        for invitee in invitees:
            users[invitee] = 100
    content: dict[str, Any] = {
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": V12_TOMBSTONE_LEVEL if infinite_creators else 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 50,
        "historical": 100,
    }
    if preset is Preset.PUBLIC_CHAT:
        content["events"]["m.call.invite"] = 50
    content.update(copy.deepcopy(PRESETS[preset].power_level_defaults))
    return content
