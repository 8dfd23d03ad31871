"""Server notices (Synapse's ``server_notices``, ``POST /_synapse/admin/v1/send_server_notice``):
messages from the server's admins, sent by a notices user in a room of its own with each
recipient.

As Synapse:

* the notices user is created on first use, with the configured display name and avatar;
* a recipient's notices room is a room where the notices user is joined, the recipient is
  invited or joined, and no one else is; none → a new one (private, not federated, the name,
  topic and avatar configured, the recipient unable to speak, tagged ``m.server_notice`` for
  them) is created;
* the recipient is invited (or, with ``auto_join``, joined) before each notice if they are not
  there. A recipient who left cannot come back into the old room (it is invite-only and their
  invite is spent): their next notice opens a new room, so notices are never lost.

A request with a transaction ID (``PUT …/send_server_notice/{txnId}``) answers a repeat with the
first answer (kept an hour, per admin access token, in this process).
"""

from __future__ import annotations

import asyncio
from typing import Any

from homeserver.accounts.sessions import create_account
from homeserver.bounded_cache import BoundedTtlCache
from homeserver.clock import WallClock
from homeserver.config.server_notices import ServerNoticesConfig
from homeserver.errors import BadRequest, Codes, NotFound
from homeserver.events.draft import EventDraft
from homeserver.rooms.creation import RateLimitPolicy, RoomCreationService
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.sender import EventSender
from homeserver.storage import Store
from homeserver.types import domain_of, user_id_error

#: the room tag marking a notices room for its recipient (spec: Server Notices).
SERVER_NOTICE_TAG = "m.server_notice"
NOT_ENABLED = "Server notices are not enabled on this server"
_TXN_TTL_MS = 3_600_000
_MAX_EVENT_TYPE = 255


class ServerNotices:
    def __init__(
        self,
        *,
        store: Store,
        config: ServerNoticesConfig,
        room_creation: RoomCreationService,
        membership: MembershipService,
        sender: EventSender,
        server_name: str,
        clock: WallClock,
    ) -> None:
        self.store = store
        self.config = config
        self.room_creation = room_creation
        self.membership = membership
        self.sender = sender
        self.server_name = server_name
        self.clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self._answers: BoundedTtlCache[tuple[str, str], dict[str, Any]] = BoundedTtlCache(
            10_000, _TXN_TTL_MS, clock
        )

    @property
    def system_user(self) -> str | None:
        localpart = self.config.system_mxid_localpart
        return None if localpart is None else f"@{localpart}:{self.server_name}"

    async def send_request(
        self, body: dict[str, Any], *, txn_key: tuple[str, str] | None = None
    ) -> dict[str, Any]:
        """The admin API's request: ``user_id``, ``content``, optional ``type`` and
        ``state_key``; ``{"event_id"}``."""
        if txn_key is not None:
            earlier = self._answers.get(txn_key)
            if earlier is not None:
                return earlier
        if not self.config.enabled:
            raise BadRequest(NOT_ENABLED, Codes.UNKNOWN)
        user_id = body.get("user_id")
        content = body.get("content")
        if not isinstance(user_id, str) or not isinstance(content, dict):
            raise BadRequest("Missing params: ['user_id', 'content']", Codes.MISSING_PARAM)
        event_type = body.get("type", "m.room.message")
        state_key = body.get("state_key")
        if not isinstance(event_type, str) or not 0 < len(event_type) <= _MAX_EVENT_TYPE:
            raise BadRequest("'type' must be a string", Codes.BAD_JSON)
        if state_key is not None and not isinstance(state_key, str):
            raise BadRequest("'state_key' must be a string", Codes.BAD_JSON)
        if user_id_error(user_id, historical=True) or domain_of(user_id) != self.server_name:
            raise BadRequest("Server notices can only be sent to local users", Codes.UNKNOWN)
        if await self.store.users.get_user(user_id) is None:
            raise NotFound("User not found")
        event_id = await self.send_notice(user_id, content, event_type, state_key)
        answer = {"event_id": event_id}
        if txn_key is not None:
            self._answers.set(txn_key, answer)
        return answer

    async def send_notice(
        self,
        user_id: str,
        content: dict[str, Any],
        event_type: str = "m.room.message",
        state_key: str | None = None,
    ) -> str:
        system = self.system_user
        if system is None:
            raise BadRequest(NOT_ENABLED, Codes.UNKNOWN)
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        async with lock:
            await self._ensure_system_user(system)
            room_id = await self._notice_room(system, user_id)
            membership = await self._membership(room_id, user_id)
            if membership is None or membership not in ("invite", "join"):
                await self.membership.invite(system, room_id, user_id)
                membership = "invite"
            if membership == "invite" and self.config.auto_join:
                await self.membership.join(user_id, room_id)
            event = await self.sender.send(
                room_id, EventDraft(event_type, system, content, state_key=state_key)
            )
        return event.event_id

    async def _membership(self, room_id: str, user_id: str) -> str | None:
        event = await self.store.state.get_current_state_event(room_id, "m.room.member", user_id)
        return event.membership if event is not None else None

    async def _ensure_system_user(self, system: str) -> None:
        if await self.store.users.get_user(system) is not None:
            return
        await create_account(
            self.store,
            system,
            None,
            now=self.clock(),
            displayname=self.config.system_mxid_display_name,
        )
        if self.config.system_mxid_avatar_url is not None:
            await self.store.profiles.set_field(
                system, "avatar_url", self.config.system_mxid_avatar_url
            )

    async def _notice_room(self, system: str, user_id: str) -> str:
        for room_id in await self.store.admin_room_ops.shared_rooms(
            system, user_id, ("invite", "join")
        ):
            joined = await self.store.state.get_current_members(room_id, "join")
            invited = await self.store.state.get_current_members(room_id, "invite")
            if system in joined and set(joined) | set(invited) <= {system, user_id}:
                return room_id
        return await self._create_room(system, user_id)

    async def _create_room(self, system: str, user_id: str) -> str:
        initial_state: list[dict[str, Any]] = []
        if self.config.room_avatar_url is not None:
            initial_state.append(
                {"type": "m.room.avatar", "content": {"url": self.config.room_avatar_url}}
            )
        body: dict[str, Any] = {
            "preset": "private_chat",
            "name": self.config.room_name,
            "creation_content": {"m.federate": False},
            # The recipient may read, not speak.
            "power_level_content_override": {"users_default": -10},
            "initial_state": initial_state,
        }
        if self.config.room_topic is not None:
            body["topic"] = self.config.room_topic
        created = await self.room_creation.create_room(
            system, body, rate_limit=RateLimitPolicy.EXEMPT
        )

        def tag(old: dict[str, Any] | None) -> dict[str, Any]:
            tags = dict((old or {}).get("tags") or {})
            tags[SERVER_NOTICE_TAG] = {}
            return {"tags": tags}

        await self.store.account_data.update_account_data(
            user_id, created.room_id, "m.tag", tag
        )
        return created.room_id
