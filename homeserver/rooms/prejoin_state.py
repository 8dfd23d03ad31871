"""The state a user sees of a room before joining it: in an invite's stripped state on /sync and,
as full PDUs, in ``invite_room_state`` over federation (Synapse's default ``room_prejoin_state``;
the create event first, as MSC4311 requires), plus, with an invite, the inviter's own
membership event (as Synapse adds it): without it a client shows a DM invite as an empty room,
since the inviter is the only other member it could name the room after."""

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


def stripped_state_keys(membership: str, sender: str) -> list[tuple[str, str]]:
    """The state keys shown with a ``membership`` event sent by ``sender``: the prejoin types,
    and for an invite the inviter's membership."""
    keys = [(event_type, "") for event_type in PREJOIN_STATE_TYPES]
    if membership == "invite":
        keys.append(("m.room.member", sender))
    return keys
