"""The server-default push rules (client-server API, "Predefined Rules", spec v1.7+).

Rules that name the user (``.m.rule.invite_for_me``, ``.m.rule.is_user_mention``,
``.m.rule.contains_user_name``) are built per user. ``.m.rule.master`` always comes before every
other rule, the user's own included; the other defaults come after the user's rules of their
kind (see :mod:`homeserver.push.rules`).
"""

from __future__ import annotations

from typing import Any

#: The kinds of a ruleset, highest priority class first.
KINDS = ("override", "content", "room", "sender", "underride")

Rule = dict[str, Any]

_SOUND_DEFAULT = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT = {"set_tweak": "highlight"}


def _match(key: str, pattern: str) -> dict[str, str]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def _rule(rule_id: str, conditions: list[Any], actions: list[Any], enabled: bool = True) -> Rule:
    return {
        "rule_id": rule_id,
        "default": True,
        "enabled": enabled,
        "conditions": conditions,
        "actions": actions,
    }


MASTER_RULE_ID = ".m.rule.master"


def default_override_rules(user_id: str) -> list[Rule]:
    """The default override rules, master first."""
    return [
        _rule(MASTER_RULE_ID, [], [], enabled=False),
        _rule(".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
        _rule(
            ".m.rule.invite_for_me",
            [
                _match("type", "m.room.member"),
                _match("content.membership", "invite"),
                _match("state_key", user_id),
            ],
            ["notify", _SOUND_DEFAULT],
        ),
        _rule(".m.rule.member_event", [_match("type", "m.room.member")], []),
        _rule(
            ".m.rule.is_user_mention",
            [
                {
                    "kind": "event_property_contains",
                    "key": "content.m\\.mentions.user_ids",
                    "value": user_id,
                }
            ],
            ["notify", _SOUND_DEFAULT, _HIGHLIGHT],
        ),
        _rule(
            ".m.rule.is_room_mention",
            [
                {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
                {"kind": "sender_notification_permission", "key": "room"},
            ],
            ["notify", _HIGHLIGHT],
        ),
        _rule(
            ".m.rule.tombstone",
            [_match("type", "m.room.tombstone"), _match("state_key", "")],
            ["notify", _HIGHLIGHT],
        ),
        _rule(".m.rule.reaction", [_match("type", "m.reaction")], []),
        _rule(
            ".m.rule.room.server_acl",
            [_match("type", "m.room.server_acl"), _match("state_key", "")],
            [],
        ),
        _rule(
            ".m.rule.suppress_edits",
            [
                {
                    "kind": "event_property_is",
                    "key": "content.m\\.relates_to.rel_type",
                    "value": "m.replace",
                }
            ],
            [],
        ),
    ]


def default_content_rules(user_id: str) -> list[Rule]:
    """``.m.rule.contains_user_name``: the user's localpart in a message body (legacy mentions,
    still served by Synapse and read by older clients)."""
    localpart = user_id[1:].split(":", 1)[0]
    return [
        {
            "rule_id": ".m.rule.contains_user_name",
            "default": True,
            "enabled": True,
            "pattern": localpart,
            "actions": ["notify", _SOUND_DEFAULT, _HIGHLIGHT],
        }
    ]


def default_underride_rules() -> list[Rule]:
    one_to_one = {"kind": "room_member_count", "is": "2"}
    return [
        _rule(
            ".m.rule.call",
            [_match("type", "m.call.invite")],
            ["notify", {"set_tweak": "sound", "value": "ring"}],
        ),
        _rule(
            ".m.rule.encrypted_room_one_to_one",
            [one_to_one, _match("type", "m.room.encrypted")],
            ["notify", _SOUND_DEFAULT],
        ),
        _rule(
            ".m.rule.room_one_to_one",
            [one_to_one, _match("type", "m.room.message")],
            ["notify", _SOUND_DEFAULT],
        ),
        _rule(".m.rule.message", [_match("type", "m.room.message")], ["notify"]),
        _rule(".m.rule.encrypted", [_match("type", "m.room.encrypted")], ["notify"]),
    ]


def default_rules(user_id: str) -> dict[str, list[Rule]]:
    """Every server-default rule by kind, as fresh dicts the caller may change."""
    return {
        "override": default_override_rules(user_id),
        "content": default_content_rules(user_id),
        "room": [],
        "sender": [],
        "underride": default_underride_rules(),
    }
