"""Room aliases and a room's directory visibility (client-server "Room aliases" and "Room
directory" modules).

Who may do what follows Synapse where the spec is silent:

* creating an alias: members of the room (server admins: any known room);
* deleting an alias: its creator, a server admin, or a member able to send
  ``m.room.canonical_alias`` (the level Synapse's ``check_can_change_room_list`` asks for);
  a deleted alias is also taken out of the room's ``m.room.canonical_alias`` when the deleter may
  send it;
* publishing a room: a member able to send ``m.room.canonical_alias``, or a server admin;
* listing a room's aliases: members, or anyone when the room is ``world_readable``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from homeserver.auth.power_levels import required_power_level, user_power_level
from homeserver.auth.rules import AuthError
from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, Forbidden, MatrixError, NotFound
from homeserver.events.draft import EventDraft
from homeserver.events.validation import EventValidationError
from homeserver.room_versions import get_room_version
from homeserver.rooms.sender import EventSender
from homeserver.storage import Store
from homeserver.storage.rooms import RoomRecord
from homeserver.types import domain_of, room_alias_error, room_id_error

logger = logging.getLogger(__name__)

VISIBILITIES = ("public", "private")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the user and whether they are a server admin."""

    user_id: str
    is_admin: bool = False


def parse_room_alias(alias: str) -> str:
    reason = room_alias_error(alias)
    if reason:
        raise BadRequest(f"Invalid room alias: {reason}", Codes.INVALID_PARAM)
    return alias


def parse_room_id(room_id: str) -> str:
    reason = room_id_error(room_id)
    if reason:
        raise BadRequest(f"Invalid room ID: {reason}", Codes.INVALID_PARAM)
    return room_id


class AliasService:
    def __init__(
        self,
        *,
        store: Store,
        sender: EventSender,
        server_name: str,
        clock: WallClock,
        remote_resolver: Callable[[str], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        self.store = store
        self.sender = sender
        self.server_name = server_name
        self.clock = clock
        #: another server's alias, asked of it; None without federation.
        self.remote_resolver = remote_resolver

    # --- helpers ---------------------------------------------------------------------------
    def _local_alias(self, alias: str) -> str:
        parse_room_alias(alias)
        if domain_of(alias) != self.server_name:
            raise BadRequest("Room alias must be on this server", Codes.INVALID_PARAM)
        return alias

    async def _room(self, room_id: str) -> RoomRecord:
        room = await self.store.rooms.get_room(parse_room_id(room_id))
        if room is None:
            raise NotFound("Unknown room")
        return room

    async def _is_joined(self, room_id: str, user_id: str) -> bool:
        member = await self.store.state.get_current_state_event(room_id, "m.room.member", user_id)
        return member is not None and member.membership == "join"

    async def can_change_room_list(self, room: RoomRecord, user_id: str) -> bool:
        """Joined, with the power to send ``m.room.canonical_alias`` (Synapse's rule)."""
        if not await self._is_joined(room.room_id, user_id):
            return False
        version = get_room_version(room.room_version)
        create = await self.store.state.get_current_state_event(room.room_id, "m.room.create")
        levels = await self.store.state.get_current_state_event(room.room_id, "m.room.power_levels")
        needed = required_power_level(version, "m.room.canonical_alias", True, levels)
        return user_power_level(version, user_id, create, levels) >= needed

    # --- aliases ---------------------------------------------------------------------------
    async def create_alias(self, caller: Caller, alias: str, room_id: Any) -> None:
        alias = self._local_alias(alias)
        if not isinstance(room_id, str):
            raise BadRequest("room_id is required and must be a string", Codes.BAD_JSON)
        room = await self._room(room_id)
        if not caller.is_admin and not await self._is_joined(room.room_id, caller.user_id):
            raise Forbidden("You must be in the room to create an alias for it")
        created = await self.store.aliases.create_alias(
            alias, room.room_id, caller.user_id, self.clock()
        )
        if not created:
            raise MatrixError(
                HTTPStatus.CONFLICT, Codes.UNKNOWN, f"Room alias {alias} already exists"
            )

    async def resolve(self, alias: str) -> dict[str, Any]:
        """``{room_id, servers}``: our server first, then the other servers with members."""
        parse_room_alias(alias)
        record = None
        if domain_of(alias) == self.server_name:
            record = await self.store.aliases.get_alias(alias)
        elif self.remote_resolver is not None:
            return await self.remote_resolver(alias)
        if record is None:
            raise NotFound(f"Room alias {alias} not found")
        joined = await self.store.state.get_current_members(record.room_id, "join")
        servers = [self.server_name]
        for user_id in joined:
            server = domain_of(user_id)
            if server not in servers:
                servers.append(server)
        return {"room_id": record.room_id, "servers": servers}

    async def delete_alias(self, caller: Caller, alias: str) -> None:
        alias = self._local_alias(alias)
        record = await self.store.aliases.get_alias(alias)
        if record is None:
            raise NotFound(f"Room alias {alias} not found")
        if not (caller.is_admin or record.creator == caller.user_id):
            room = await self.store.rooms.get_room(record.room_id)
            if room is None or not await self.can_change_room_list(room, caller.user_id):
                raise Forbidden("You don't have permission to delete the alias.")
        if not await self.store.aliases.delete_alias(alias):
            raise NotFound(f"Room alias {alias} not found")  # deleted concurrently
        await self._remove_from_canonical_alias(caller.user_id, record.room_id, alias)

    async def _remove_from_canonical_alias(self, user_id: str, room_id: str, alias: str) -> None:
        event = await self.store.state.get_current_state_event(room_id, "m.room.canonical_alias")
        if event is None:
            return
        content = dict(event.content)
        alt = content.get("alt_aliases")
        changed = False
        if content.get("alias") == alias:
            del content["alias"]
            changed = True
        if isinstance(alt, list) and alias in alt:
            content["alt_aliases"] = [a for a in alt if a != alias]
            changed = True
        if not changed:
            return
        try:
            await self.sender.send(
                room_id, EventDraft("m.room.canonical_alias", user_id, content, "")
            )
        except (AuthError, EventValidationError, MatrixError) as e:
            # The alias is gone either way; a stale canonical alias only misleads clients.
            logger.info("could not update the canonical alias of %s: %s", room_id, e)

    async def get_room_aliases(self, caller: Caller, room_id: str) -> list[str]:
        parse_room_id(room_id)
        room = await self.store.rooms.get_room(room_id)
        allowed = room is not None and (
            caller.is_admin or await self._is_joined(room_id, caller.user_id)
        )
        if room is not None and not allowed:
            visibility = await self.store.state.get_current_state_event(
                room_id, "m.room.history_visibility"
            )
            allowed = (
                visibility is not None
                and visibility.content.get("history_visibility") == "world_readable"
            )
        if not allowed:
            raise Forbidden("You are not allowed to view this room's aliases")
        return await self.store.aliases.get_aliases_for_room(room_id)

    # --- directory visibility --------------------------------------------------------------
    async def get_visibility(self, room_id: str) -> str:
        room = await self._room(room_id)
        return "public" if room.is_public else "private"

    async def set_visibility(self, caller: Caller, room_id: str, visibility: Any) -> None:
        if visibility not in VISIBILITIES:
            raise BadRequest("visibility must be 'public' or 'private'", Codes.INVALID_PARAM)
        room = await self._room(room_id)
        if not caller.is_admin and not await self.can_change_room_list(room, caller.user_id):
            raise Forbidden(
                "This server requires you to be a moderator in the room to edit its room list entry"
            )
        await self.store.rooms.set_public(room.room_id, visibility == "public")
