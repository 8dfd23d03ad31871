"""The redaction algorithm, one table per room version (``RoomVersion.redaction_rules``)."""

from __future__ import annotations

from typing import Any

from homeserver.room_versions import RoomVersion

_ALWAYS_KEPT_TOP_LEVEL = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "auth_events",
        "origin_server_ts",
    }
)
_LEGACY_TOP_LEVEL = frozenset({"origin", "membership", "prev_state"})

_POWER_LEVEL_KEYS = (
    "ban",
    "events",
    "events_default",
    "kick",
    "redact",
    "state_default",
    "users",
    "users_default",
)


def _kept_content(room_version: RoomVersion, event_type: str, content: dict[str, Any]) -> dict:
    rules = room_version.redaction_rules
    keys: tuple[str, ...] = ()
    if event_type == "m.room.member":
        keys = ("membership",)
        if rules.keeps_join_authorised_via_users_server:
            keys += ("join_authorised_via_users_server",)
        kept = {k: content[k] for k in keys if k in content}
        if rules.keeps_third_party_invite_signed:
            invite = content.get("third_party_invite")
            if isinstance(invite, dict) and "signed" in invite:
                kept["third_party_invite"] = {"signed": invite["signed"]}
        return kept
    if event_type == "m.room.create":
        if rules.keeps_all_create_content:
            return dict(content)
        keys = ("creator",)
    elif event_type == "m.room.join_rules":
        keys = ("join_rule", "allow") if rules.keeps_join_rules_allow else ("join_rule",)
    elif event_type == "m.room.power_levels":
        keys = _POWER_LEVEL_KEYS + (("invite",) if rules.keeps_power_levels_invite else ())
    elif event_type == "m.room.aliases":
        keys = ("aliases",) if rules.keeps_aliases_content else ()
    elif event_type == "m.room.history_visibility":
        keys = ("history_visibility",)
    elif event_type == "m.room.redaction":
        keys = ("redacts",) if rules.keeps_redaction_redacts else ()
    return {k: content[k] for k in keys if k in content}


def prune_event_dict(room_version: RoomVersion, pdu: dict[str, Any]) -> dict[str, Any]:
    """A new dict holding what redaction keeps of ``pdu`` (``unsigned`` is always dropped)."""
    allowed = _ALWAYS_KEPT_TOP_LEVEL
    if room_version.redaction_rules.keeps_origin_membership_prev_state:
        allowed = allowed | _LEGACY_TOP_LEVEL
    pruned = {k: v for k, v in pdu.items() if k in allowed}
    content = pdu.get("content")
    pruned["content"] = (
        _kept_content(room_version, pdu.get("type", ""), content)
        if isinstance(content, dict)
        else {}
    )
    return pruned
