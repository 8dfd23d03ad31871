"""The state a user sees of a room before joining it: in an invite's stripped state on /sync and,
as full PDUs, in ``invite_room_state`` over federation (Synapse's default ``room_prejoin_state``;
the create event first, as MSC4311 requires)."""

from __future__ import annotations

PREJOIN_STATE_TYPES = (
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
)
