"""The admin API's users: the v2 list, one user, create-or-modify, deactivation and whois, with
Synapse's keys (``synapse/rest/admin/users.py``, ``handlers/admin.py``).

Deactivation (``POST /v1/deactivate``, or ``deactivated: true`` in a PUT) does what Synapse's
does for our data: the account is marked deactivated and its password removed, every access
token and device goes (all in one transaction, so no request authenticates as the user after
it), then the user leaves every room through the membership path — so the other servers in
those rooms hear it — and rejects pending invites. With ``erase`` the profile is cleared and
the user is recorded as erased. Login is refused from then on (no password, no token).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from homeserver.accounts.client_ips import ClientIpRecorder
from homeserver.accounts.device_removal import DeviceRemoval
from homeserver.accounts.profile import ProfileService
from homeserver.accounts.sessions import create_account, hash_password_async
from homeserver.accounts.usernames import check_localpart, password_param
from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, Forbidden, NotFound
from homeserver.rooms.membership import MembershipService
from homeserver.storage import Store
from homeserver.storage.admin_users import AdminUserRow, UserQuery
from homeserver.types import user_id_error

logger = logging.getLogger(__name__)


def user_json(row: AdminUserRow, *, creation_in_seconds: bool = False) -> dict[str, Any]:
    """A user as Synapse's admin API shows one (fields we do not have get their neutral value:
    no guests, user types, locks, third-party IDs or external IDs here). ``creation_ts`` is in
    milliseconds in the list and in seconds for one user (``GET /v2/users/{u}``), as Synapse
    answers each."""
    creation_ts = row.created_ts // 1000 if creation_in_seconds else row.created_ts
    return {
        "name": row.user_id,
        "user_type": None,
        "is_guest": False,
        "admin": row.admin,
        "deactivated": row.deactivated,
        "shadow_banned": row.shadow_banned,
        "locked": False,
        "suspended": row.suspended,
        "displayname": row.displayname,
        "avatar_url": row.avatar_url,
        "creation_ts": creation_ts,
        "erased": row.erased,
        "last_seen_ts": row.last_seen_ts,
        "appservice_id": None,
        "consent_server_notice_sent": None,
        "consent_version": None,
        "consent_ts": None,
        "threepids": [],
        "external_ids": [],
    }


_LIST_KEYS = (
    "name",
    "user_type",
    "is_guest",
    "admin",
    "deactivated",
    "shadow_banned",
    "displayname",
    "avatar_url",
    "creation_ts",
    "erased",
    "last_seen_ts",
    "locked",
)


@dataclass(frozen=True, slots=True)
class UserChanges:
    """A PUT body, checked."""

    password: str | None
    logout_devices: bool
    admin: bool | None
    deactivated: bool | None
    #: (given, value): a key given as null clears the field.
    displayname: tuple[bool, str | None]
    avatar_url: tuple[bool, str | None]


def _flag(body: dict[str, Any], key: str) -> bool | None:
    if key not in body:
        return None
    value = body[key]
    if not isinstance(value, bool):
        raise BadRequest(f"'{key}' parameter is not of type boolean", Codes.BAD_JSON)
    return value


def _text(body: dict[str, Any], key: str) -> tuple[bool, str | None]:
    if key not in body:
        return False, None
    value = body[key]
    if value is not None and (not isinstance(value, str) or "\x00" in value):
        raise BadRequest(f"'{key}' must be a string", Codes.BAD_JSON)
    return True, value


def parse_user_changes(body: dict[str, Any]) -> UserChanges:
    if body.get("user_type") is not None:
        raise BadRequest("Invalid user type", Codes.INVALID_PARAM)
    if body.get("locked") is True:
        raise BadRequest("Locking users is not supported by this server", Codes.INVALID_PARAM)
    logout = _flag(body, "logout_devices")
    return UserChanges(
        password=password_param(body.get("password")),
        logout_devices=True if logout is None else logout,
        admin=_flag(body, "admin"),
        deactivated=_flag(body, "deactivated"),
        displayname=_text(body, "displayname"),
        avatar_url=_text(body, "avatar_url"),
    )


class AdminUsers:
    def __init__(
        self,
        *,
        store: Store,
        membership: MembershipService,
        profiles: ProfileService,
        server_name: str,
        clock: WallClock,
        device_removal: DeviceRemoval | None = None,
        client_ips: ClientIpRecorder | None = None,
    ) -> None:
        #: flushed before whois reads what it recorded.
        self.client_ips = client_ips
        self.store = store
        self.membership = membership
        self.profiles = profiles
        self.server_name = server_name
        self.clock = clock
        # Devices go with their keys (and the removal is announced) whichever path removes them.
        self.device_removal = device_removal or DeviceRemoval(store, server_name, clock)

    def _check_local(self, user_id: str, message: str) -> None:
        if user_id_error(user_id, historical=True) or user_id.split(":", 1)[1] != self.server_name:
            raise BadRequest(message, Codes.UNKNOWN)

    # --- reads ---------------------------------------------------------------------------------
    async def list_users(self, query: UserQuery) -> dict[str, Any]:
        rows, total = await self.store.admin_users.list_users(query)
        users = [{k: user_json(r)[k] for k in _LIST_KEYS} for r in rows]
        body: dict[str, Any] = {"users": users, "total": total}
        if query.start + query.limit < total:
            body["next_token"] = str(query.start + len(users))
        return body

    async def get_user(self, user_id: str) -> dict[str, Any]:
        self._check_local(user_id, "Can only look up local users")
        row = await self.store.admin_users.get_user_row(user_id)
        if row is None:
            raise NotFound("User not found")
        return user_json(row, creation_in_seconds=True)

    async def whois(
        self, requester_id: str, requester_is_admin: bool, user_id: str
    ) -> dict[str, Any]:
        """Synapse's whois: ``devices`` (by device ID, ``""`` for tokens without one) →
        ``sessions`` (one per access token) → ``connections`` (``ip``, ``last_seen`` in ms,
        ``user_agent``: one per address and user agent the token was used from, as recorded
        by ``accounts/client_ips.py`` and kept for ``user_ips_max_age``). A live token not
        used since it was made is one connection with nulls."""
        if user_id != requester_id and not requester_is_admin:
            raise Forbidden("You are not a server admin")
        self._check_local(user_id, "Can only whois a local user")
        if self.client_ips is not None:
            await self.client_ips.flush()
        sessions: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for use in await self.store.client_ips.connections(user_id):
            sessions.setdefault((use.device_id or "", use.token_hash), []).append(
                {"ip": use.ip, "last_seen": use.last_seen, "user_agent": use.user_agent}
            )
        for token in await self.store.admin_users.get_sessions(user_id):
            key = (token.device_id or "", token.token_hash)
            if key not in sessions:
                sessions[key] = [{"ip": None, "last_seen": token.last_used, "user_agent": None}]
        devices: dict[str, Any] = {}
        for (device_id, _), connections in sorted(sessions.items()):
            device = devices.setdefault(device_id, {"sessions": []})
            connections.sort(key=lambda c: c["last_seen"] or 0)
            device["sessions"].append({"connections": connections})
        return {"user_id": user_id, "devices": devices}

    # --- create or modify ---------------------------------------------------------------------
    async def put_user(
        self, requester_id: str, user_id: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """``PUT /v2/users/{userId}``: 201 and the user when created, 200 when modified."""
        self._check_local(user_id, "This endpoint can only be used with local users")
        changes = parse_user_changes(body)
        existing = await self.store.users.get_user(user_id)
        if existing is None:
            await self._create(user_id, changes)
            return 201, await self.get_user(user_id)
        await self._modify(requester_id, user_id, existing.admin, existing.deactivated, changes)
        return 200, await self.get_user(user_id)

    async def _create(self, user_id: str, changes: UserChanges) -> None:
        localpart = user_id[1:].split(":", 1)[0]
        check_localpart(localpart, self.server_name)
        password_hash = (
            None if changes.password is None else await hash_password_async(changes.password)
        )
        created = await create_account(
            self.store,
            user_id,
            password_hash,
            now=self.clock(),
            admin=bool(changes.admin),
            displayname=changes.displayname[1],
        )
        if created is None:  # created by someone else meanwhile
            raise BadRequest("User ID already taken.", Codes.USER_IN_USE)
        if changes.avatar_url[0] and changes.avatar_url[1] is not None:
            await self.store.profiles.set_field(user_id, "avatar_url", changes.avatar_url[1])

    async def _modify(
        self,
        requester_id: str,
        user_id: str,
        is_admin: bool,
        is_deactivated: bool,
        changes: UserChanges,
    ) -> None:
        for field, (given, value) in (
            ("displayname", changes.displayname),
            ("avatar_url", changes.avatar_url),
        ):
            if given:
                await self.profiles.set_field(requester_id, True, user_id, field, value)
        if changes.admin is not None and changes.admin != is_admin:
            if user_id == requester_id and not changes.admin:
                raise BadRequest("You may not demote yourself.", Codes.UNKNOWN)
            await self.store.users.set_admin(user_id, changes.admin)
        if changes.password is not None:
            await self.store.users.set_password_hash(
                user_id, await hash_password_async(changes.password)
            )
            if changes.logout_devices:
                await self.device_removal.delete_all_devices(user_id)
        if changes.deactivated is True and not is_deactivated:
            await self.deactivate(user_id, erase=False)
        elif changes.deactivated is False and is_deactivated:
            await self.store.admin_users.set_deactivated(user_id, False)
            await self.store.admin_users.set_erased(user_id, False)

    # --- deactivation ---------------------------------------------------------------------------
    async def deactivate(self, user_id: str, *, erase: bool) -> dict[str, Any]:
        """``POST /v1/deactivate/{userId}``."""
        self._check_local(user_id, "Can only deactivate local users")
        if await self.store.users.get_user(user_id) is None:
            raise NotFound("User not found")
        # First: from here on no token of the user works and no password matches. The devices
        # go first with their keys; deactivate_user then also ends a login made meanwhile.
        await self.device_removal.delete_all_devices(user_id)
        await self.store.users.deactivate_user(user_id)
        if erase:
            await self.store.admin_users.set_erased(user_id, True)
        await self._part_all_rooms(user_id)
        if erase:
            # After leaving: a profile change is announced in every room the user is joined to.
            for field in ("displayname", "avatar_url"):
                await self.store.profiles.set_field(user_id, field, None)
        return {"id_server_unbind_result": "success"}

    async def _part_all_rooms(self, user_id: str) -> None:
        rooms: set[str] = set()
        for membership in ("join", "invite", "knock"):
            rooms.update(await self.store.state.get_rooms_for_user(user_id, membership))
        # Invites received over federation into rooms we are not in (rejected remotely).
        upto = await self.store.events.get_max_stream_ordering()
        for pending in await self.store.out_of_band.get_current(user_id, "invite", upto):
            rooms.add(pending.room_id)
        for room_id in sorted(rooms):
            try:
                await self.membership.leave(user_id, room_id)
            except Exception:
                # One room that cannot be left (a remote server down) must not stop the rest.
                logger.exception("deactivating %s: could not leave %s", user_id, room_id)
