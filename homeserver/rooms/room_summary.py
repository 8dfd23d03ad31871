"""Room summaries (MSC3266, spec ``GET /_matrix/client/v1/room_summary/{roomIdOrAlias}``):
what a client shows of a room before joining it, as Synapse answers.

A room we are in is summarised from our state; another is asked of the servers ``via`` names
(or the alias's servers) through their ``/hierarchy``. Either way the room is shown only when
the caller may see it (the rules of :mod:`space_entries`; a caller without a token sees only
public, knockable and world-readable rooms), and a caller with a token gets its own
``membership`` ("leave" when it has none). A room not found or not visible is one 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from homeserver.errors import BadRequest, Codes, NotFound
from homeserver.rooms.hierarchy import MAX_SERVERS_PER_SPACE
from homeserver.rooms.space_entries import LocalSummaries, RemoteFetcher
from homeserver.storage import Store
from homeserver.types import room_alias_error, room_id_error

#: an alias → ``{room_id, servers}`` (the alias service's ``resolve``).
AliasResolver = Callable[[str], Awaitable[dict[str, Any]]]
NOT_ACCESSIBLE = "Room not found or is not accessible"


class RoomSummaryService:
    def __init__(
        self,
        *,
        store: Store,
        server_name: str,
        resolve_alias: AliasResolver,
        remote: RemoteFetcher | None = None,
    ) -> None:
        self.local = LocalSummaries(store, server_name)
        self.server_name = server_name
        self.resolve_alias = resolve_alias
        self.remote = remote

    async def get_summary(
        self, user_id: str | None, room_id_or_alias: str, via: Sequence[str]
    ) -> dict[str, Any]:
        room_id, servers = await self._room_id(room_id_or_alias, via)
        if await self.local.is_resident(room_id):
            summary = await self.local.summarise(
                room_id,
                user_id=user_id,
                origin=None,
                suggested_only=False,
                include_children=False,
            )
            if summary is None:
                raise NotFound(NOT_ACCESSIBLE)
            room = dict(summary.entry)
        else:
            asked = [s for s in servers if s != self.server_name][:MAX_SERVERS_PER_SPACE]
            if not asked:
                raise BadRequest("Missing via to query remote room", Codes.MISSING_PARAM)
            answer = None if self.remote is None else await self.remote(room_id, asked, False)
            if answer is None or not await self.local.remote_entry_accessible(
                user_id, room_id, answer.room.entry
            ):
                raise NotFound(NOT_ACCESSIBLE)
            room = dict(answer.room.entry)
            room.pop("allowed_room_ids", None)
        if user_id is not None:
            room["membership"] = await self.local.membership(room_id, user_id) or "leave"
        return room

    async def _room_id(self, room_id_or_alias: str, via: Sequence[str]) -> tuple[str, list[str]]:
        if room_id_or_alias.startswith("#"):
            if room_alias_error(room_id_or_alias) is not None:
                raise BadRequest("Invalid room alias", Codes.INVALID_PARAM)
            resolved = await self.resolve_alias(room_id_or_alias)
            return resolved["room_id"], list(via) or list(resolved.get("servers", []))
        if room_id_error(room_id_or_alias) is not None:
            raise BadRequest(f"{room_id_or_alias!r} is not a room ID or alias", Codes.INVALID_PARAM)
        return room_id_or_alias, list(via)
