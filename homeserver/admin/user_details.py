"""The admin API's per-user tabs and actions, with Synapse's keys and units
(``synapse/rest/admin/users.py``, ``devices.py``, ``experimental_features.py``; its
``docs/admin_api/user_admin_api.md`` is the contract): devices, joined rooms, pushers,
memberships, account data, rate-limit overrides, invite and join counts, experimental
features, logging in as a user, password reset, shadow bans, suspension, a master
cross-signing key replaceable without UIA, and the look-ups by third-party or external ID
(which find nobody: we keep neither). A user's media is ``http/admin/media.py``'s.

Every user-scoped call checks that the user ID is ours (400) and, where Synapse does, that the
user exists (404) before anything is read or written.
"""

from __future__ import annotations

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
from homeserver.push.pushers import pusher_json
from homeserver.storage import Store
from homeserver.storage.admin_user_data import DeviceRow, RateLimitOverride
from homeserver.storage.user_overrides import UserOverrides
from homeserver.storage.users import hash_access_token
from homeserver.types import user_id_error

#: As Synapse: how long an admin's allowance to replace a master key without UIA lasts.
CROSS_SIGNING_REPLACEMENT_MS = 10 * 60 * 1000

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


#: The largest integer JSON carries exactly (canonical JSON's bound); larger ones are refused.
MAX_JSON_INT = 2**53 - 1


def _non_negative_int(body: dict[str, Any], key: str) -> int:
    value = body.get(key, 0)
    if type(value) is not int or not 0 <= value <= MAX_JSON_INT:
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
    ) -> None:
        self.store = store
        self.server_name = server_name
        self.clock = clock
        self.device_removal = device_removal
        self.client_ips = client_ips
        self.overrides = overrides

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
        await self.overrides.changed()
        return await self.get_ratelimit(user_id)

    async def delete_ratelimit(self, user_id: str) -> None:
        await self._existing(user_id, "Only local users can be ratelimited")
        await self.store.admin_user_data.delete_ratelimit(user_id)
        await self.overrides.changed()

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

    async def set_suspended(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``PUT /v1/suspend/{u}``: ``{"user_<id>_suspended": bool}`` as Synapse answers."""
        self._check_local(user_id, "Can only suspend local users")
        if await self.store.users.get_user(user_id) is None:
            raise NotFound("User not found")
        suspend = body.get("suspend")
        if not isinstance(suspend, bool):
            raise BadRequest("'suspend' must be true or false", Codes.BAD_JSON)
        await self.store.admin_user_data.set_suspended(user_id, suspend)
        await self.overrides.changed()
        return {f"user_{user_id}_suspended": suspend}

    async def allow_cross_signing_replacement(self, user_id: str) -> dict[str, Any]:
        """For ``CROSS_SIGNING_REPLACEMENT_MS`` the user may replace their master key without
        UIA; 404 if they have none (as Synapse)."""
        self._check_local(user_id)
        before = self.clock() + CROSS_SIGNING_REPLACEMENT_MS
        if not await self.store.admin_user_data.allow_cross_signing_replacement(user_id, before):
            raise NotFound("User has no master cross-signing key")
        return {"updatable_without_uia_before_ms": before}

    async def renew_account_validity(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/account_validity/validity``: accounts do not expire here (no
        ``account_validity`` section), so there is nothing to renew."""
        if "user_id" not in body:
            raise BadRequest("Missing property 'user_id' in the request body")
        raise BadRequest("Account validity is not enabled on this server", Codes.UNKNOWN)

    async def set_shadow_banned(self, user_id: str, banned: bool) -> None:
        self._check_local(user_id, "Only local users can be shadow-banned")
        if not await self.store.admin_user_data.set_shadow_banned(user_id, banned):
            raise NotFound("User not found")
        await self.overrides.changed()

    # --- sessions and passwords ---------------------------------------------------------------
    async def login_as(self, admin_id: str, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """A token for ``user_id`` without a device (so it is in no device list), recorded as
        made by ``admin_id``, valid until ``valid_until_ms`` when given (Synapse's puppet
        token: it ends when the admin logs out everywhere)."""
        self._check_local(user_id, "Only local users can be logged in as")
        if await self.store.users.get_user(user_id) is None:
            raise NotFound("User not found")
        valid_until_ms = body.get("valid_until_ms")
        if valid_until_ms is not None and (
            type(valid_until_ms) is not int or not 0 <= valid_until_ms <= MAX_JSON_INT
        ):
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
