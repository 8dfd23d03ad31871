"""The admin API's room tools (Synapse's ``synapse/rest/admin/rooms.py`` and friends): forward
extremities, the block flag, joining a local user to a room, making a user a room admin,
reading any event, each room's size in the database, and the list of background tasks.

Joins and invites go through ``MembershipService`` (the one membership gate: blocks, bans and
join rules apply), power levels through ``EventSender`` (the auth rules apply): an admin of the
server acts in a room only through a local user with the power to.
"""

from __future__ import annotations

from typing import Any

from homeserver.auth.power_levels import room_creators, user_power_level
from homeserver.auth.rules import AuthError
from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, MatrixError, NotFound
from homeserver.events.draft import EventDraft
from homeserver.room_versions import get_room_version
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.sender import EventSender
from homeserver.storage import Store
from homeserver.types import domain_of, event_id_error, room_id_error, user_id_error
from homeserver.visibility.serialize import serialize_for_client

#: Synapse answers the ten largest rooms.
LARGEST_ROOMS = 10


def _target_user(body: dict[str, Any], default: str | None = None) -> str:
    user_id = body.get("user_id", default)
    if user_id is None:
        raise BadRequest("Missing params: ['user_id']", Codes.MISSING_PARAM)
    if not isinstance(user_id, str) or user_id_error(user_id, historical=True):
        raise BadRequest("'user_id' must be a valid user ID", Codes.INVALID_PARAM)
    return user_id


class AdminRoomOps:
    def __init__(
        self,
        *,
        store: Store,
        membership: MembershipService,
        sender: EventSender,
        server_name: str,
        clock: WallClock,
    ) -> None:
        self.store = store
        self.membership = membership
        self.sender = sender
        self.server_name = server_name
        self.clock = clock

    async def resolve_room(self, room_id_or_alias: str) -> str:
        """A room ID from a room ID or a local alias (400 if neither, 404 for an unknown
        alias)."""
        room_id, _servers = await self.membership.resolve_room(room_id_or_alias)
        return room_id

    async def _known_room(self, room_id_or_alias: str) -> str:
        room_id = await self.resolve_room(room_id_or_alias)
        if await self.store.rooms.get_room(room_id) is None:
            raise NotFound("Room not found")
        return room_id

    # --- forward extremities ----------------------------------------------------------------
    async def forward_extremities(self, room_id_or_alias: str) -> dict[str, Any]:
        room_id = await self._known_room(room_id_or_alias)
        found = await self.store.admin_room_ops.get_forward_extremities(room_id)
        return {
            "count": len(found),
            "results": [
                {
                    "event_id": e.event_id,
                    "state_group": e.state_group,
                    "depth": e.depth,
                    "received_ts": e.received_ts,
                }
                for e in found
            ],
        }

    async def delete_forward_extremities(self, room_id_or_alias: str) -> dict[str, Any]:
        room_id = await self._known_room(room_id_or_alias)
        deleted = await self.store.admin_room_ops.delete_forward_extremities(room_id)
        return {"deleted": deleted}

    # --- block ------------------------------------------------------------------------------
    @staticmethod
    def _check_room_id(room_id: str) -> None:
        if room_id_error(room_id):
            raise BadRequest(f"{room_id} is not a legal room ID", Codes.INVALID_PARAM)

    async def block_status(self, room_id: str) -> dict[str, Any]:
        self._check_room_id(room_id)
        blocked_by = await self.store.admin_room_ops.get_block(room_id)
        if blocked_by is None:
            return {"block": False}
        return {"block": True, "user_id": blocked_by}

    async def set_block(self, room_id: str, body: dict[str, Any], admin: str) -> dict[str, Any]:
        self._check_room_id(room_id)
        block = body.get("block")
        if not isinstance(block, bool):
            raise BadRequest("Param 'block' must be a boolean", Codes.BAD_JSON)
        await self.store.admin_room_ops.set_block(room_id, admin, block, self.clock())
        return {"block": block}

    # --- membership -------------------------------------------------------------------------
    async def _local_user(self, user_id: str) -> None:
        if domain_of(user_id) != self.server_name:
            raise BadRequest("This endpoint can only be used with local users", Codes.UNKNOWN)
        if await self.store.users.get_user(user_id) is None:
            raise NotFound("User not found")

    async def join_user(
        self, admin: str, room_id_or_alias: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Synapse's ``POST /v1/join/{roomIdOrAlias}``: a room that is not public first gets
        an invite from the calling admin (who must be able to invite there)."""
        target = _target_user(body)
        await self._local_user(target)
        room_id = await self.resolve_room(room_id_or_alias)
        join_rules = await self.store.state.get_current_state_event(room_id, "m.room.join_rules")
        if join_rules is not None and join_rules.content.get("join_rule") != "public":
            await self.membership.invite(admin, room_id, target)
        await self.membership.join(target, room_id)
        return {"room_id": room_id}

    async def make_room_admin(
        self, admin: str, room_id_or_alias: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Give ``user_id`` (default: the caller) the power of the room's most powerful local
        member, who sends the power levels; invite them if they are not in a room that is not
        public."""
        target = _target_user(body, admin)
        room_id = await self.resolve_room(room_id_or_alias)
        room = await self.store.rooms.get_room(room_id)
        if room is None:
            raise BadRequest("Server not in room", Codes.UNKNOWN)
        state = self.store.state
        create = await state.get_current_state_event(room_id, "m.room.create")
        levels = await state.get_current_state_event(room_id, "m.room.power_levels")
        version = get_room_version(room.room_version)
        members = await self.store.admin_rooms.get_local_memberships(room_id, self.server_name)
        joined = [user for user, membership in members.items() if membership == "join"]
        if not joined:
            raise BadRequest("No local admin user in room", Codes.UNKNOWN)
        powers = {user: user_power_level(version, user, create, levels) for user in joined}
        acting = max(sorted(joined), key=lambda user: powers[user])
        if levels is None and (create is None or create.sender != acting):
            raise BadRequest("No local admin user in room", Codes.UNKNOWN)
        creators = room_creators(version, create) if create is not None else frozenset()
        # A v12 creator holds unlimited power already (and may not be listed in ``users``).
        if not (version.creators_have_infinite_power and target in creators):
            content = dict(levels.content) if levels is not None else {}
            users = dict(content.get("users") or {})
            users[target] = users.get(acting, 100)
            content["users"] = users
            try:
                await self.sender.send(
                    room_id, EventDraft("m.room.power_levels", acting, content, state_key="")
                )
            except (MatrixError, AuthError) as e:
                if isinstance(e, MatrixError) and e.status >= 500:
                    raise
                raise BadRequest(
                    "No local admin user in room with power to update power levels.",
                    Codes.UNKNOWN,
                ) from e
        membership = members.get(target)
        if membership in ("join", "invite"):
            return {}
        join_rules = await state.get_current_state_event(room_id, "m.room.join_rules")
        if join_rules is not None and join_rules.content.get("join_rule") == "public":
            return {}
        await self.membership.invite(acting, room_id, target)
        return {}

    # --- reads ------------------------------------------------------------------------------
    async def fetch_event(self, event_id: str) -> dict[str, Any]:
        """Synapse's ``GET /v1/fetch_event/{eventId}``: the event in federation format, seen
        from no room membership."""
        if event_id_error(event_id):
            raise BadRequest(f"{event_id} is not a legal event ID", Codes.INVALID_PARAM)
        event = await self.store.events.get_event(event_id)
        if event is None:
            raise NotFound("Event not found")
        body = event.federation_json()
        body["event_id"] = event.event_id
        (client,) = await serialize_for_client(self.store, [event], self.clock())
        if "unsigned" in client:
            body["unsigned"] = client["unsigned"]
        return {"event": body}

    async def database_room_sizes(self) -> dict[str, Any]:
        sizes = await self.store.admin_room_ops.room_sizes()
        return {
            "rooms": [
                {"room_id": room_id, "estimated_size": size}
                for room_id, size in sizes[:LARGEST_ROOMS]
            ]
        }
