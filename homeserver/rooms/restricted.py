"""Restricted rooms (spec: client-server "Restricted rooms", server-server "Restricted rooms"):
who may join a ``restricted`` / ``knock_restricted`` room without an invite, and which of our
users vouches for the join (``join_authorised_via_users_server``).

The server decides both from its own state; a client's or a peer's choice of authoriser is
never taken. The auth rules (homeserver/auth/rules.py) then check that the authoriser is
joined, may invite, and that its server signed the event.

Errors as the spec and Synapse give them: a user in none of the allowed rooms gets 403
``M_FORBIDDEN``; a remote user whose allowed rooms we cannot see (we are not in them) gets 400
``M_UNABLE_TO_AUTHORISE_JOIN``; a user who qualifies but for whom none of our users may invite
gets 400 ``M_UNABLE_TO_GRANT_JOIN`` (the joining server should try another server).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from homeserver.auth.power_levels import named_power_level, user_power_level
from homeserver.errors import BadRequest, Forbidden
from homeserver.events.event import Event
from homeserver.room_versions import RoomVersion
from homeserver.storage import Store
from homeserver.types import domain_of, room_id_error

AUTHORISER_KEY = "join_authorised_via_users_server"
UNABLE_TO_AUTHORISE_JOIN = "M_UNABLE_TO_AUTHORISE_JOIN"
UNABLE_TO_GRANT_JOIN = "M_UNABLE_TO_GRANT_JOIN"
NOT_IN_ALLOWED_ROOM = "You do not belong to any of the required rooms/spaces to join this room."
#: memberships that need no authoriser: the auth rules let them join anyway.
_NO_AUTHORISER_NEEDED = frozenset({"join", "invite"})


# --- pure rules ------------------------------------------------------------------------------
def is_restricted(version: RoomVersion, join_rule: object) -> bool:
    """Whether ``join_rule`` is a restricted one in this room version."""
    return (join_rule == "restricted" and version.restricted_join_rule) or (
        join_rule == "knock_restricted" and version.knock_restricted_join_rule
    )


def allows_knock(version: RoomVersion, join_rule: object) -> bool:
    return (join_rule == "knock" and version.knock_join_rule) or (
        join_rule == "knock_restricted" and version.knock_restricted_join_rule
    )


def allowed_room_ids(join_rules_content: Mapping[str, Any]) -> list[str]:
    """The rooms of the ``allow`` list's ``m.room_membership`` conditions; entries of other
    types or of the wrong shape are skipped (the spec: they match no one)."""
    allow = join_rules_content.get("allow")
    if not isinstance(allow, list):
        return []
    rooms: list[str] = []
    for entry in allow:
        if not isinstance(entry, dict) or entry.get("type") != "m.room_membership":
            continue
        room_id = entry.get("room_id")
        if isinstance(room_id, str) and room_id_error(room_id) is None:
            rooms.append(room_id)
    return list(dict.fromkeys(rooms))


def pick_authoriser(
    version: RoomVersion,
    create: Event | None,
    power_levels: Event | None,
    candidates: Iterable[str],
) -> str | None:
    """Of ``candidates`` (our joined users), the one with the most power at or above the
    invite level (ties: the smallest user ID, so the choice is stable); None if nobody may
    invite."""
    invite_level = named_power_level(version, "invite", power_levels)
    able = [
        (user_power_level(version, user, create, power_levels), user)
        for user in sorted(set(candidates))
    ]
    able = [(power, user) for power, user in able if power >= invite_level]
    if not able:
        return None
    best = max(power for power, _ in able)
    return next(user for power, user in able if power == best)


# --- against our state -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class JoinRulesView:
    """What a restricted-join decision reads from a room's current state."""

    join_rule: object
    allowed_rooms: list[str]
    create: Event | None
    power_levels: Event | None
    membership: str | None


class RestrictedJoins:
    def __init__(self, store: Store, server_name: str) -> None:
        self.store = store
        self.server_name = server_name

    async def authoriser_for(self, room_id: str, version: RoomVersion, user_id: str) -> str | None:
        """The user to name in ``user_id``'s join to ``room_id`` (one of ours), or None when
        the join needs none (not a restricted room, or the user is invited or joined).
        Raises the spec's errors when the join cannot be authorised here."""
        view = await self._view(room_id, user_id)
        if not is_restricted(version, view.join_rule) or view.membership in _NO_AUTHORISER_NEEDED:
            return None
        local = domain_of(user_id) == self.server_name
        known = [r for r in view.allowed_rooms if await self._server_in(r)]
        if not local and not known:
            raise BadRequest(
                "Unable to authorise the join: this server is in none of the required rooms",
                UNABLE_TO_AUTHORISE_JOIN,
            )
        if not await self._in_any(known, user_id):
            if not local and len(known) < len(view.allowed_rooms):
                raise BadRequest(
                    f"Unable to check if {user_id} is in the required rooms",
                    UNABLE_TO_AUTHORISE_JOIN,
                )
            raise Forbidden(NOT_IN_ALLOWED_ROOM)
        members = await self.store.state.get_current_members(room_id, "join")
        ours = [u for u in members if domain_of(u) == self.server_name]
        authoriser = pick_authoriser(version, view.create, view.power_levels, ours)
        if authoriser is None:
            raise BadRequest(
                "No user on this server can authorise joining this room", UNABLE_TO_GRANT_JOIN
            )
        return authoriser

    async def authorising_servers(self, room_id: str, version: RoomVersion) -> list[str]:
        """Other servers in the room with a joined user who may invite, the most powerful
        first: those that can vouch for a join none of our users can."""
        view = await self._view(room_id, "")
        members = await self.store.state.get_current_members(room_id, "join")
        by_server: dict[str, list[str]] = {}
        for user in members:
            if domain_of(user) != self.server_name:
                by_server.setdefault(domain_of(user), []).append(user)
        ranked: list[tuple[Any, str]] = []
        for server, users in by_server.items():
            best = pick_authoriser(version, view.create, view.power_levels, users)
            if best is not None:
                power = user_power_level(version, best, view.create, view.power_levels)
                ranked.append((power, server))
        ranked.sort(key=lambda item: (-item[0], item[1]))
        return [server for _, server in ranked]

    async def _view(self, room_id: str, user_id: str) -> JoinRulesView:
        state = self.store.state
        join_rules = await state.get_current_state_event(room_id, "m.room.join_rules")
        member = await state.get_current_state_event(room_id, "m.room.member", user_id)
        content = {} if join_rules is None else join_rules.content
        return JoinRulesView(
            join_rule=content.get("join_rule"),
            allowed_rooms=allowed_room_ids(content),
            create=await state.get_current_state_event(room_id, "m.room.create"),
            power_levels=await state.get_current_state_event(room_id, "m.room.power_levels"),
            membership=None if member is None else member.membership,
        )

    async def _server_in(self, room_id: str) -> bool:
        return await self.store.state.is_host_joined(room_id, self.server_name)

    async def _in_any(self, room_ids: Iterable[str], user_id: str) -> bool:
        for room_id in room_ids:
            event = await self.store.state.get_current_state_event(
                room_id, "m.room.member", user_id
            )
            if event is not None and event.membership == "join":
                return True
        return False
