"""Membership changes a local user asks for: join, leave (also rejecting an invite), invite,
kick, ban, unban, forget.

Each change is one ``m.room.member`` event sent through the event sender, under the room lock,
where the auth rules have the last word. The checks before it exist to give the messages
clients know from Synapse ("is already in the room", "is not in the room") and to refuse what
the auth rules would allow but a client never means (an "unban" of a joined user would kick
them). Remote rooms and aliases need federation (a later issue): joining one is 404
"No known servers".
"""

from __future__ import annotations

from typing import Any

from homeserver.auth.rules import AuthError
from homeserver.errors import BadRequest, Codes, Forbidden, MatrixError, NotFound
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.ratelimit import RateLimiters
from homeserver.rooms.client_errors import client_event_errors
from homeserver.rooms.creation import ProfileLookup
from homeserver.rooms.sender import EventSender
from homeserver.rooms.visibility import get_membership
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.storage.rooms import RoomRecord
from homeserver.types import domain_of, room_alias_error, room_id_error

NO_KNOWN_SERVERS = "No known servers"


async def _no_profile(user_id: str) -> dict[str, str]:
    return {}


class MembershipService:
    def __init__(
        self,
        store: Store,
        sender: EventSender,
        ratelimiters: RateLimiters,
        *,
        server_name: str,
        profiles: ProfileLookup = _no_profile,
    ) -> None:
        self.store = store
        self.sender = sender
        self.ratelimiters = ratelimiters
        self.server_name = server_name
        self._profiles = profiles

    # --- join ------------------------------------------------------------------------------
    async def resolve_room(self, room_id_or_alias: str) -> str:
        """The room ID named by a room ID or a local alias."""
        if room_id_or_alias.startswith("#"):
            reason = room_alias_error(room_id_or_alias)
            if reason:
                raise BadRequest(reason, Codes.INVALID_PARAM)
            if domain_of(room_id_or_alias) != self.server_name:
                raise NotFound(NO_KNOWN_SERVERS)
            alias = await self.store.aliases.get_alias(room_id_or_alias)
            if alias is None:
                raise NotFound(f"Room alias {room_id_or_alias} not found")
            return alias.room_id
        reason = room_id_error(room_id_or_alias)
        if reason:
            raise BadRequest(
                f"{room_id_or_alias!r} is not a valid room ID or alias: {reason}",
                Codes.INVALID_PARAM,
            )
        return room_id_or_alias

    async def join(self, user_id: str, room_id_or_alias: str, *, reason: str | None = None) -> str:
        """Join a room by ID or alias; returns the room ID."""
        room_id = await self.resolve_room(room_id_or_alias)
        room = await self.store.rooms.get_room(room_id)
        if room is None:
            raise NotFound(NO_KNOWN_SERVERS)
        content: dict[str, Any] = {"membership": "join"}
        content.update(await self._profile_content(user_id))
        current = await get_membership(self.store, room_id, user_id)
        if current is not None and current.membership == "join":
            if _same_profile(current, content) and reason is None:
                return room_id  # nothing would change: no new event (as Synapse)
        else:
            # Only real joins count against the limit, not profile refreshes (as Synapse).
            self.ratelimiters.joins_local.check(user_id)
        if current is not None and current.membership == "ban":
            raise Forbidden("You are banned from this room")
        if reason is not None:
            content["reason"] = reason
        try:
            await self._send(room, user_id, user_id, content)
        except Forbidden as e:
            if e.message.startswith("join: join rule"):
                raise Forbidden("You are not invited to this room.") from None
            raise
        return room_id

    # --- leave and the moderator actions ---------------------------------------------------
    async def leave(self, user_id: str, room_id: str, *, reason: str | None = None) -> None:
        """Leave a room, or reject an invite / withdraw a knock."""
        room = await self._room(room_id)
        current = await get_membership(self.store, room_id, user_id)
        if current is None:
            raise Forbidden("You are not a member of this room")
        if current.membership == "leave":
            return  # already left: nothing to do
        if current.membership == "ban":
            raise Forbidden("You are banned from this room")
        await self._send(room, user_id, user_id, _content("leave", reason))

    async def invite(
        self,
        user_id: str,
        room_id: str,
        target: str,
        *,
        reason: str | None = None,
        is_direct: bool = False,
    ) -> None:
        room = await self._room(room_id)
        current = await get_membership(self.store, room_id, target)
        if current is not None and current.membership == "join":
            raise Forbidden(f"{target} is already in the room.")
        if current is not None and current.membership == "ban":
            raise Forbidden(f"{target} is banned from the room")
        content = _content("invite", reason)
        if is_direct:
            content["is_direct"] = True
        if domain_of(target) == self.server_name:
            content.update(await self._profile_content(target))
        await self._send(room, user_id, target, content)

    async def kick(
        self, user_id: str, room_id: str, target: str, *, reason: str | None = None
    ) -> None:
        room = await self._room(room_id)
        current = await get_membership(self.store, room_id, target)
        if current is None or current.membership not in ("join", "invite", "knock"):
            raise Forbidden("The target user is not in the room")
        await self._send(room, user_id, target, _content("leave", reason))

    async def ban(
        self, user_id: str, room_id: str, target: str, *, reason: str | None = None
    ) -> None:
        room = await self._room(room_id)
        await self._send(room, user_id, target, _content("ban", reason))

    async def unban(
        self, user_id: str, room_id: str, target: str, *, reason: str | None = None
    ) -> None:
        room = await self._room(room_id)
        current = await get_membership(self.store, room_id, target)
        if current is None or current.membership != "ban":
            raise Forbidden("The target user is not banned from the room")
        await self._send(room, user_id, target, _content("leave", reason))

    # --- forget ----------------------------------------------------------------------------
    async def forget(self, user_id: str, room_id: str, now_ms: int) -> None:
        """Forget a room the user has left (hidden from /sync until they come back)."""
        await self._room(room_id)
        current = await get_membership(self.store, room_id, user_id)
        if current is None:
            return  # never a member: nothing to forget (as Synapse)
        if current.membership not in ("leave", "ban"):
            raise BadRequest(f"User {user_id} is in room {room_id}", Codes.UNKNOWN)
        await self.store.room_use.forget(user_id, room_id, now_ms)

    # --- helpers ---------------------------------------------------------------------------
    async def _room(self, room_id: str) -> RoomRecord:
        reason = room_id_error(room_id)
        if reason:
            raise BadRequest(reason, Codes.INVALID_PARAM)
        room = await self.store.rooms.get_room(room_id)
        if room is None:
            raise NotFound("Unknown room")
        return room

    async def _send(
        self, room: RoomRecord, sender: str, target: str, content: dict[str, Any]
    ) -> Event:
        draft = EventDraft("m.room.member", sender, content, state_key=target)
        with client_event_errors():
            return await self.store.db.run_in_transaction(
                "send_membership", self._send_txn, room, draft
            )

    async def _send_txn(self, txn: Transaction, room: RoomRecord, draft: EventDraft) -> Event:
        (event,) = await self.sender.send_txn(txn, room, [draft])
        if draft.content.get("membership") in ("join", "invite") and draft.state_key:
            # Coming back (or being invited back) un-forgets the room, as in Synapse.
            await self.store.room_use.unforget_txn(txn, draft.state_key, room.room_id)
        return event

    async def _profile_content(self, user_id: str) -> dict[str, str]:
        """``displayname`` / ``avatar_url`` from the user's global profile, when known."""
        try:
            return dict(await self._profiles(user_id))
        except (MatrixError, AuthError):
            return {}


def _content(membership: str, reason: str | None) -> dict[str, Any]:
    content: dict[str, Any] = {"membership": membership}
    if reason is not None:
        content["reason"] = reason
    return content


def _same_profile(current: Event, content: dict[str, Any]) -> bool:
    return all(
        current.content.get(key) == content.get(key) for key in ("displayname", "avatar_url")
    )
