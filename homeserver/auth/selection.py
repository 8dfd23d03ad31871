"""Which state events an event cites as its ``auth_events`` (spec: "Auth events selection").

The same list serves two sides: the event builder picks these keys from the current state, and
the auth rules refuse an event citing anything outside them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.events.state_keys import (
    CREATE_KEY,
    JOIN_RULES_KEY,
    POWER_LEVELS_KEY,
    StateKey,
    member_key,
)
from homeserver.room_versions import RoomVersion

#: Memberships for which the join rules decide the outcome (knock only exists from v7, but
#: citing the join rules for a knock in older versions is harmless: the knock is refused anyway).
_MEMBERSHIPS_NEEDING_JOIN_RULES = frozenset({"join", "invite", "knock"})


def auth_types_for_event(
    room_version: RoomVersion,
    event_type: str,
    sender: str,
    state_key: str | None,
    content: Mapping[str, Any],
) -> list[StateKey]:
    """The ``(type, state_key)`` pairs an event may cite as auth events, without duplicates.

    Each is cited only if the room's state has it. The create event cites nothing.
    """
    if event_type == "m.room.create":
        return []
    keys: list[StateKey] = []
    # v12 identifies the create event by the room ID, so citing it would be redundant.
    if room_version.create_event_in_auth_events:
        keys.append(CREATE_KEY)
    keys += [POWER_LEVELS_KEY, member_key(sender)]

    if event_type == "m.room.member" and state_key is not None:
        keys.append(member_key(state_key))
        membership = content.get("membership")
        # Not a string (a list, an object): unhashable, and no membership the rules know.
        if isinstance(membership, str) and membership in _MEMBERSHIPS_NEEDING_JOIN_RULES:
            keys.append(JOIN_RULES_KEY)
        token = _third_party_invite_token(content)
        if membership == "invite" and token is not None:
            keys.append(("m.room.third_party_invite", token))
        # The spec ties this to the room version, not to the membership: a restricted join is the
        # only use, but another membership carrying the key may cite the user too.
        via = content.get("join_authorised_via_users_server")
        if room_version.restricted_join_rule and isinstance(via, str):
            keys.append(member_key(via))

    return list(dict.fromkeys(keys))


def _third_party_invite_token(content: Mapping[str, Any]) -> str | None:
    invite = content.get("third_party_invite")
    signed = invite.get("signed") if isinstance(invite, Mapping) else None
    token = signed.get("token") if isinstance(signed, Mapping) else None
    return token if isinstance(token, str) else None
