"""The admin API's per-user tabs and actions, with Synapse's keys and units
(``synapse/rest/admin/users.py``, ``devices.py``, ``experimental_features.py``; its
``docs/admin_api/user_admin_api.md`` is the contract): devices, joined rooms, media,
pushers, memberships, account data, rate-limit overrides, invite and join counts,
experimental features, logging in as a user, password reset and shadow bans.

Every user-scoped call checks that the user ID is ours (400) and, where Synapse does, that the
user exists (404) before anything is read or written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.accounts.client_ips import ClientIpRecorder
from homeserver.accounts.device_removal import DeviceRemoval
from homeserver.accounts.devices import parse_device_ids, parse_display_name
from homeserver.accounts.sessions import hash_password_async, new_access_token
from homeserver.accounts.usernames import (
    MAX_DEVICE_ID_LENGTH,
    check_localpart,
    password_param,
)
from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, NotFound
from homeserver.media.repository import MediaRepository
from homeserver.push.pushers import pusher_json
from homeserver.storage import Store
from homeserver.storage.admin_user_data import DeviceRow, RateLimitOverride, UserMediaRow
from homeserver.storage.user_overrides import UserOverrides
from homeserver.storage.users import hash_access_token
from homeserver.types import user_id_error

#: Synapse's per-user experimental features (``ExperimentalFeature``).
EXPERIMENTAL_FEATURES = ("msc3881", "msc3575", "msc4222")


def admin_device_json(device: DeviceRow) -> dict[str, Any]:
    """A device as the admin API shows one (``display_name`` absent when unset, as Synapse)."""
    body: dict[str, Any] = {
        "device_id": device.device_id,
        "last_seen_ip": device.last_seen_ip,
        "last_seen_user_agent": device.last_seen_user_agent,
        "last_seen_ts": device.last_seen_ts,
        "user_id": device.user_id,
        "dehydrated": False,
    }
    if device.display_name is not None:
        body["display_name"] = device.display_name
    return body


def media_json(media: UserMediaRow) -> dict[str, Any]:
    return {
        "created_ts": media.created_ts,
        "last_access_ts": None,
        "media_id": media.media_id,
        "media_length": media.media_length,
        "media_type": media.media_type,
        "quarantined_by": media.quarantined_by,
        "safe_from_quarantine": media.safe_from_quarantine,
        "upload_name": media.upload_name,
    }


@dataclass(frozen=True, slots=True)
class MediaPage:
    start: int
    limit: int
    order_by: str
    backwards: bool


def _non_negative_int(body: dict[str, Any], key: str) -> int:
    value = body.get(key, 0)
    if type(value) is not int or value < 0:
        raise BadRequest(f"{value!r} parameter must be a positive int", Codes.INVALID_PARAM)
    return value


class AdminUserDetails:
    def __init__(
        self,
        *,
        store: Store,
        server_name: str,
        clock: WallClock,
        device_removal: DeviceRemoval,
        client_ips: ClientIpRecorder,
        overrides: UserOverrides,
        media: MediaRepository,
    ) -> None:
        self.store = store
        self.server_name = server_name
        self.clock = clock
        self.device_removal = device_removal
        self.client_ips = client_ips
        self.overrides = overrides
        self.media = media

    # --- checks ------------------------------------------------------------------------------
    def _check_local(self, user_id: str, message: str = "Can only look up local users") -> None:
        if user_id_error(user_id, historical=True) or user_id.split(":", 1)[1] != self.server_name:
            raise BadRequest(message)

    async def _existing(self, user_id: str, message: str = "Can only look up local users") -> None:
        self._check_local(user_id, message)
        if await self.store.users.get_user(user_id) is None:
            raise NotFound("User not found")

    # --- devices -------------------------------------------------------------------------------
    async def list_devices(self, user_id: str) -> dict[str, Any]:
        await self._existing(user_id)
        await self.client_ips.flush()
        devices = [
            admin_device_json(d) for d in await self.store.admin_user_data.get_devices(user_id)
        ]
        return {"devices": devices, "total": len(devices)}

    async def get_device(self, user_id: str, device_id: str) -> dict[str, Any]:
        await self._existing(user_id)
        await self.client_ips.flush()
        device = await self.store.admin_user_data.get_device(user_id, device_id)
        if device is None:
            raise NotFound("No device found")
        return admin_device_json(device)

    async def create_device(self, user_id: str, body: dict[str, Any]) -> None:
        await self._existing(user_id)
        device_id = body.get("device_id")
        if (
            not isinstance(device_id, str)
            or not 0 < len(device_id) <= MAX_DEVICE_ID_LENGTH
            or "\x00" in device_id
        ):
            raise BadRequest("device_id must be a string", Codes.INVALID_PARAM)
        await self.store.users.upsert_device(user_id, device_id)

    async def rename_device(self, user_id: str, device_id: str, body: dict[str, Any]) -> None:
        await self._existing(user_id)
        name = parse_display_name(body)
        if not await self.store.users.set_device_display_name(user_id, device_id, name):
            raise NotFound("No device found")

    async def delete_devices(
        self, user_id: str, body: dict[str, Any] | None, device_id: str | None = None
    ) -> None:
        """One device (``DELETE …/devices/{d}``) or a list (``POST …/delete_devices``); their
        sessions end with them, as when the user deletes them. Unknown ones are fine."""
        await self._existing(user_id)
        device_ids = [device_id] if device_id is not None else parse_device_ids(body or {})
        await self.device_removal.delete_devices(user_id, device_ids)

    # --- rooms, media, pushers, account data ----------------------------------------------------
    async def joined_rooms(self, user_id: str) -> dict[str, Any]:
        self._check_local(user_id)
        rooms = await self.store.state.get_rooms_for_user(user_id)
        return {"joined_rooms": rooms, "total": len(rooms)}

    async def memberships(self, user_id: str) -> dict[str, Any]:
        self._check_local(user_id)
        return {"memberships": await self.store.admin_user_data.memberships(user_id)}

    async def list_media(self, user_id: str, page: MediaPage) -> dict[str, Any]:
        await self._existing(user_id)
        rows, total = await self.store.admin_user_data.user_media(
            user_id, page.start, page.limit, page.order_by, page.backwards
        )
        body: dict[str, Any] = {"media": [media_json(m) for m in rows], "total": total}
        if page.start + page.limit < total:
            body["next_token"] = page.start + len(rows)
        return body

    async def delete_media(self, user_id: str, page: MediaPage) -> dict[str, Any]:
        await self._existing(user_id)
        rows, _ = await self.store.admin_user_data.user_media(
            user_id, page.start, page.limit, page.order_by, page.backwards
        )
        deleted = [m.media_id for m in rows if await self.media.delete_local(m.media_id)]
        return {"deleted_media": deleted, "total": len(deleted)}

    async def pushers(self, user_id: str) -> dict[str, Any]:
        await self._existing(user_id)
        pushers = []
        for pusher in await self.store.pushers.get_pushers(user_id):
            body = pusher_json(pusher)
            body.setdefault("profile_tag", "")
            pushers.append(body)
        return {"pushers": pushers, "total": len(pushers)}

    async def account_data(self, user_id: str) -> dict[str, Any]:
        await self._existing(user_id)
        global_data, rooms = await self.store.admin_user_data.all_account_data(user_id)
        return {"account_data": {"global": global_data, "rooms": rooms}}

    async def sent_invite_count(self, user_id: str, from_ts: int) -> dict[str, Any]:
        self._check_local(user_id)
        count = await self.store.admin_user_data.sent_invite_count(user_id, from_ts)
        return {"invite_count": count}

    async def cumulative_joined_room_count(self, user_id: str, from_ts: int) -> dict[str, Any]:
        self._check_local(user_id)
        count = await self.store.admin_user_data.joined_room_count(user_id, from_ts)
        return {"cumulative_joined_room_count": count}

    # --- rate limits, features, shadow bans -----------------------------------------------------
    async def get_ratelimit(self, user_id: str) -> dict[str, Any]:
        await self._existing(user_id)
        override = await self.store.admin_user_data.get_ratelimit(user_id)
        if override is None:
            return {}
        return {
            "messages_per_second": override.messages_per_second,
            "burst_count": override.burst_count,
        }

    async def set_ratelimit(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        await self._existing(user_id, "Only local users can be ratelimited")
        override = RateLimitOverride(
            _non_negative_int(body, "messages_per_second"), _non_negative_int(body, "burst_count")
        )
        await self.store.admin_user_data.set_ratelimit(user_id, override)
        await self.overrides.reload()
        return await self.get_ratelimit(user_id)

    async def delete_ratelimit(self, user_id: str) -> None:
        await self._existing(user_id, "Only local users can be ratelimited")
        await self.store.admin_user_data.delete_ratelimit(user_id)
        await self.overrides.reload()

    async def get_features(self, user_id: str) -> dict[str, Any]:
        self._check_local(
            user_id, "User must be local to check what experimental features are enabled."
        )
        enabled = await self.store.admin_user_data.enabled_features(user_id)
        return {"features": {f: f in enabled for f in EXPERIMENTAL_FEATURES}}

    async def set_features(self, user_id: str, body: dict[str, Any]) -> None:
        self._check_local(user_id, "User must be local to enable experimental features.")
        features = body.get("features")
        if not features:
            raise BadRequest("You must provide features to set.")
        if not isinstance(features, dict):
            raise BadRequest("features must be an object", Codes.BAD_JSON)
        for feature, enabled in features.items():
            if feature not in EXPERIMENTAL_FEATURES:
                raise BadRequest(f"{feature!r} is not recognised as a valid experimental feature.")
            if not isinstance(enabled, bool):
                raise BadRequest(f"{feature!r} must be true or false", Codes.BAD_JSON)
        await self.store.admin_user_data.set_features(user_id, dict(features))

    async def set_shadow_banned(self, user_id: str, banned: bool) -> None:
        self._check_local(user_id, "Only local users can be shadow-banned")
        if not await self.store.admin_user_data.set_shadow_banned(user_id, banned):
            raise NotFound("User not found")
        await self.overrides.reload()

    # --- sessions and passwords ---------------------------------------------------------------
    async def login_as(self, admin_id: str, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """A token for ``user_id`` without a device (so it is in no device list), recorded as
        made by ``admin_id``, valid until ``valid_until_ms`` when given (Synapse's puppet
        token: it ends when the admin logs out everywhere)."""
        self._check_local(user_id, "Only local users can be logged in as")
        if await self.store.users.get_user(user_id) is None:
            raise NotFound("User not found")
        valid_until_ms = body.get("valid_until_ms")
        if valid_until_ms is not None and type(valid_until_ms) is not int:
            raise BadRequest("'valid_until_ms' parameter must be an int")
        if admin_id == user_id:
            raise BadRequest("Cannot use admin API to login as self")
        token = new_access_token()
        async with self.store.db.transaction("admin_login_as") as txn:
            await self.store.users.add_access_token_txn(
                txn,
                hash_access_token(token),
                user_id,
                None,
                created_ts=self.clock(),
                valid_until_ms=valid_until_ms,
                puppeted_by=admin_id,
            )
        return {"access_token": token}

    async def reset_password(self, user_id: str, body: dict[str, Any]) -> None:
        self._check_local(user_id, "Can only reset the password of local users")
        password = password_param(body.get("new_password"), "new_password", required=True)
        logout = body.get("logout_devices", True)
        if not isinstance(logout, bool):
            raise BadRequest("'logout_devices' must be true or false", Codes.BAD_JSON)
        if await self.store.users.get_user(user_id) is None:
            raise NotFound("User not found")
        assert password is not None
        await self.store.users.set_password_hash(user_id, await hash_password_async(password))
        if logout:
            await self.device_removal.delete_all_devices(user_id)

    async def username_available(self, username: Any) -> dict[str, Any]:
        if not isinstance(username, str):
            raise BadRequest("Missing string query parameter 'username'", Codes.MISSING_PARAM)
        user_id = check_localpart(username, self.server_name)
        if await self.store.users.find_user_id_case_insensitive(user_id) is not None:
            raise BadRequest("User ID already taken.", Codes.USER_IN_USE)
        return {"available": True}
