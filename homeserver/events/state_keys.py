"""Event types and state keys the server reads by name: the one place they are spelled.

A state key here is the ``(event type, state_key)`` pair that indexes a room's state. Pure
constants, so every layer may import them.
"""

from __future__ import annotations

StateKey = tuple[str, str]

CREATE = "m.room.create"
POWER_LEVELS = "m.room.power_levels"
JOIN_RULES = "m.room.join_rules"
MEMBER = "m.room.member"
HISTORY_VISIBILITY = "m.room.history_visibility"
CANONICAL_ALIAS = "m.room.canonical_alias"
TOMBSTONE = "m.room.tombstone"

CREATE_KEY: StateKey = (CREATE, "")
POWER_LEVELS_KEY: StateKey = (POWER_LEVELS, "")
JOIN_RULES_KEY: StateKey = (JOIN_RULES, "")
HISTORY_VISIBILITY_KEY: StateKey = (HISTORY_VISIBILITY, "")
CANONICAL_ALIAS_KEY: StateKey = (CANONICAL_ALIAS, "")
TOMBSTONE_KEY: StateKey = (TOMBSTONE, "")


def member_key(user_id: str) -> StateKey:
    """The state key of ``user_id``'s membership."""
    return (MEMBER, user_id)
