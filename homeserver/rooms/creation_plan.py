"""The genesis plan of a new room: which events, with which content, in the spec's order.

Pure: from a validated request, the room version and server policy, produce the drafts. The
creation service builds (signs, auth-checks) and commits them in one transaction.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from homeserver.events.draft import EventDraft
from homeserver.room_versions import RoomVersion
from homeserver.rooms.create_request import CreateRoomRequest
from homeserver.rooms.presets import (
    MEGOLM_ALGORITHM,
    PRESETS,
    EncryptionPolicy,
    Preset,
    default_power_levels,
    encryption_by_default,
)


@dataclass(frozen=True, slots=True)
class CreationPolicy:
    """The server's room-creation settings (from config)."""

    encryption: EncryptionPolicy = EncryptionPolicy.OFF
    #: ``default_power_level_content_override``: preset name -> PL keys laid over the defaults.
    default_power_level_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GenesisPlan:
    room_version: RoomVersion
    create: EventDraft
    #: every event after the create event, in order (the creator's join first).
    drafts: list[EventDraft]
    alias: str | None
    publish: bool
    invitees: tuple[str, ...]


def _create_content(
    request: CreateRoomRequest, room_version: RoomVersion, creator: str
) -> dict[str, Any]:
    content = copy.deepcopy(request.creation_content)
    content.pop("creator", None)
    content["room_version"] = room_version.identifier
    if not room_version.implicit_room_creator:
        content["creator"] = creator
    if room_version.has_additional_creators and PRESETS[request.preset].invitees_get_creator_power:
        extra = list(content.get("additional_creators") or [])
        for invitee in request.invite:
            if invitee not in extra and invitee != creator:
                extra.append(invitee)
        if extra:
            content["additional_creators"] = extra
    return content


def _power_levels(
    request: CreateRoomRequest, room_version: RoomVersion, creator: str, policy: CreationPolicy
) -> dict[str, Any]:
    content = default_power_levels(room_version, request.preset, creator, list(request.invite))
    preset_override = policy.default_power_level_overrides.get(str(request.preset))
    if preset_override:
        content.update(copy.deepcopy(preset_override))
    if request.power_level_content_override:
        # a shallow update at the top level, as Synapse: an override of ``events`` replaces the
        # whole map.
        content.update(copy.deepcopy(request.power_level_content_override))
    return content


def _topic_content(topic: str) -> dict[str, Any]:
    return {"topic": topic, "m.topic": {"m.text": [{"body": topic, "mimetype": "text/plain"}]}}


def plan_genesis(
    request: CreateRoomRequest,
    *,
    room_version: RoomVersion,
    creator: str,
    server_name: str,
    policy: CreationPolicy,
    creator_profile: dict[str, Any] | None = None,
) -> GenesisPlan:
    preset = PRESETS[request.preset]
    initial = {(e.type, e.state_key): e.content for e in request.initial_state}

    def state(event_type: str, content: dict[str, Any], state_key: str = "") -> EventDraft:
        return EventDraft(event_type, creator, content, state_key=state_key)

    drafts: list[EventDraft] = [
        state("m.room.member", {"membership": "join", **(creator_profile or {})}, creator)
    ]
    # An ``m.room.power_levels`` in initial_state is used instead of the generated one (Synapse).
    power_levels = initial.pop(("m.room.power_levels", ""), None)
    if power_levels is None:
        power_levels = _power_levels(request, room_version, creator, policy)
    drafts.append(state("m.room.power_levels", power_levels))
    alias = f"#{request.room_alias_name}:{server_name}" if request.room_alias_name else None
    if alias:
        drafts.append(state("m.room.canonical_alias", {"alias": alias}))
    if ("m.room.join_rules", "") not in initial:
        drafts.append(state("m.room.join_rules", {"join_rule": preset.join_rule}))
    if ("m.room.history_visibility", "") not in initial:
        drafts.append(
            state("m.room.history_visibility", {"history_visibility": preset.history_visibility})
        )
    if preset.guest_access is not None and ("m.room.guest_access", "") not in initial:
        drafts.append(state("m.room.guest_access", {"guest_access": preset.guest_access}))
    for entry in request.initial_state:
        if entry.type == "m.room.power_levels" and entry.state_key == "":
            continue
        if request.name is not None and (entry.type, entry.state_key) == ("m.room.name", ""):
            continue
        if request.topic is not None and (entry.type, entry.state_key) == ("m.room.topic", ""):
            continue
        drafts.append(state(entry.type, entry.content, entry.state_key))
    if ("m.room.encryption", "") not in initial and encryption_by_default(
        policy.encryption, request.preset
    ):
        drafts.append(state("m.room.encryption", {"algorithm": MEGOLM_ALGORITHM}))
    if request.name is not None:
        drafts.append(state("m.room.name", {"name": request.name}))
    if request.topic is not None:
        drafts.append(state("m.room.topic", _topic_content(request.topic)))
    for invitee in request.invite:
        content: dict[str, Any] = {"membership": "invite"}
        if request.is_direct:
            content["is_direct"] = True
        drafts.append(state("m.room.member", content, invitee))
    return GenesisPlan(
        room_version=room_version,
        create=EventDraft(
            "m.room.create",
            creator,
            _create_content(request, room_version, creator),
            state_key="",
        ),
        drafts=drafts,
        alias=alias,
        publish=request.visibility == "public",
        invitees=request.invite,
    )


__all__ = ["CreationPolicy", "GenesisPlan", "Preset", "plan_genesis"]
