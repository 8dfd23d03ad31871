"""Global profiles (display name, avatar URL) and their reflection into room memberships.

When a user changes their profile, every room they are joined to gets a new join event
carrying it, as Synapse does, so other members see the new name. A room that refuses the event
(or fails) is logged and skipped: the profile change itself has already happened.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from homeserver.errors import BadRequest, Codes, Forbidden, NotFound
from homeserver.events.draft import EventDraft
from homeserver.rooms.sender import EventSender
from homeserver.storage import Store
from homeserver.types import user_id_error

logger = logging.getLogger(__name__)

#: Synapse's limits (synapse/handlers/profile.py).
MAX_DISPLAYNAME_LENGTH = 256
MAX_AVATAR_URL_LENGTH = 1000
_LIMITS = {"displayname": MAX_DISPLAYNAME_LENGTH, "avatar_url": MAX_AVATAR_URL_LENGTH}


def parse_profile_field(body: dict[str, Any], field: str) -> str | None:
    """The new value of ``field`` from a ``PUT /profile/{userId}/{field}`` body; an empty
    string clears it (None)."""
    if field not in body:
        raise BadRequest(f"Missing key '{field}'", Codes.MISSING_PARAM)
    value = body[field]
    if not isinstance(value, str):
        raise BadRequest(f"'{field}' must be a string", Codes.INVALID_PARAM)
    if len(value) > _LIMITS[field]:
        raise BadRequest(f"'{field}' is too long (max {_LIMITS[field]})", Codes.INVALID_PARAM)
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL; refuse it on both engines alike.
        raise BadRequest(f"'{field}' must not contain NUL", Codes.INVALID_PARAM)
    return value or None


def check_user_id(user_id: str) -> None:
    reason = user_id_error(user_id, historical=True)
    if reason:
        raise BadRequest(f"Invalid user ID: {reason}", Codes.INVALID_PARAM)


class ProfileService:
    def __init__(
        self,
        store: Store,
        sender: EventSender,
        server_name: str,
        *,
        remote_lookup: Callable[[str], Awaitable[dict[str, str]]] | None = None,
        suspended: Callable[[str], bool] = lambda _user_id: False,
    ) -> None:
        self._store = store
        #: a suspended user may not change their own profile (Synapse's M_USER_SUSPENDED).
        self._suspended = suspended
        self._sender = sender
        self._server_name = server_name
        #: another server's user's profile, asked of it; None without federation.
        self.remote_lookup = remote_lookup

    def _is_mine(self, user_id: str) -> bool:
        return user_id.split(":", 1)[-1] == self._server_name

    async def get_profile(self, user_id: str) -> dict[str, str]:
        """``displayname`` / ``avatar_url`` of a local user, only the keys that are set (for
        the member events of joins and invites). Empty for unknown and remote users."""
        if not self._is_mine(user_id):
            return {}
        return (await self._store.profiles.get_profile(user_id)).to_json()

    async def get_profiles(self, user_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """:meth:`get_profile` of many users in one read (a batch of joins)."""
        mine = [u for u in dict.fromkeys(user_ids) if self._is_mine(u)]
        found = await self._store.profiles.get_profiles(mine) if mine else {}
        return {u: found[u].to_json() if u in found else {} for u in user_ids}

    async def lookup(self, user_id: str) -> dict[str, str]:
        """``GET /profile/{userId}``: 404 for a user we do not know; another server's user's
        profile is asked of their server (404 without federation)."""
        check_user_id(user_id)
        if not self._is_mine(user_id) and self.remote_lookup is not None:
            return await self.remote_lookup(user_id)
        if not self._is_mine(user_id) or await self._store.users.get_user(user_id) is None:
            raise NotFound("Profile was not found")
        return (await self._store.profiles.get_profile(user_id)).to_json()

    async def set_field(
        self, requester_id: str, is_admin: bool, user_id: str, field: str, value: str | None
    ) -> None:
        """Set the requester's own ``field`` (admins may set anyone's) and announce it in every
        room the user is joined to."""
        check_user_id(user_id)
        if not self._is_mine(user_id):
            raise BadRequest("User is not hosted on this homeserver", Codes.INVALID_PARAM)
        if user_id != requester_id and not is_admin:
            raise Forbidden(f"Cannot set another user's {field}")
        if user_id == requester_id and self._suspended(user_id):
            raise Forbidden(
                f"Updating {field} while account is suspended is not allowed.",
                Codes.USER_SUSPENDED,
            )
        if await self._store.users.get_user(user_id) is None:
            raise NotFound("Profile was not found")
        await self._store.profiles.set_field(user_id, field, value)
        await self._update_memberships(user_id)

    async def _update_memberships(self, user_id: str) -> None:
        profile = await self.get_profile(user_id)
        for room_id in await self._store.state.get_rooms_for_user(user_id):
            try:
                current = await self._store.state.get_current_state_event(
                    room_id, "m.room.member", user_id
                )
                if current is None or current.membership != "join":
                    continue  # left meanwhile
                # Fresh content like Synapse's: keys of the old join (e.g. a restricted join's
                # authorising server) say nothing about this one.
                content = {"membership": "join", **profile}
                draft = EventDraft("m.room.member", user_id, content, user_id)
                await self._sender.send(room_id, draft)
            except Exception:
                logger.exception("could not update %s's profile in %s", user_id, room_id)
