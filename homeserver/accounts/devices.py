"""The requester's devices: list, show, rename, and delete (after re-entering the password)."""

from __future__ import annotations

from typing import Any

from homeserver.accounts.client_ips import ClientIpRecorder
from homeserver.accounts.device_removal import DeviceRemoval
from homeserver.accounts.reauth import Reauthenticator
from homeserver.accounts.usernames import MAX_DEVICE_DISPLAY_NAME_LENGTH, MAX_DEVICE_ID_LENGTH
from homeserver.errors import BadRequest, Codes, NotFound
from homeserver.storage import Store
from homeserver.storage.admin_user_data import DeviceRow

DELETE_DEVICES_OPERATION = "delete_devices"


def device_json(device: DeviceRow) -> dict[str, Any]:
    """A device as the client API shows it: where it was last used, as recorded by
    ``client_ips.py`` (nio requires all four keys; a device not used since it was made has null
    ones). The user agent is for admins only (Synapse leaves it out here too)."""
    return {
        "device_id": device.device_id,
        "display_name": device.display_name,
        "last_seen_ip": device.last_seen_ip,
        "last_seen_ts": device.last_seen_ts,
    }


def parse_device_ids(body: dict[str, Any]) -> list[str]:
    """``devices`` of ``POST /delete_devices``."""
    devices = body.get("devices")
    if not isinstance(devices, list) or not all(
        isinstance(d, str) and 0 < len(d) <= MAX_DEVICE_ID_LENGTH and "\x00" not in d
        for d in devices
    ):
        raise BadRequest("devices must be a list of device IDs", Codes.INVALID_PARAM)
    return list(dict.fromkeys(devices))


def parse_display_name(body: dict[str, Any]) -> str | None:
    """``display_name`` of ``PUT /devices/{deviceId}`` (absent or null clears it)."""
    name = body.get("display_name")
    if name is not None and not isinstance(name, str):
        raise BadRequest("display_name must be a string", Codes.INVALID_PARAM)
    if name is not None and len(name) > MAX_DEVICE_DISPLAY_NAME_LENGTH:
        raise BadRequest(
            f"Device display name is too long (max {MAX_DEVICE_DISPLAY_NAME_LENGTH})",
            Codes.TOO_LARGE,
        )
    if name is not None and "\x00" in name:
        # PostgreSQL text cannot hold NUL; refuse it on both engines alike.
        raise BadRequest("display_name must not contain NUL", Codes.INVALID_PARAM)
    return name


class DeviceService:
    def __init__(
        self,
        store: Store,
        reauth: Reauthenticator,
        device_removal: DeviceRemoval,
        client_ips: ClientIpRecorder | None = None,
    ) -> None:
        self._store = store
        self._reauth = reauth
        self._device_removal = device_removal
        self._client_ips = client_ips

    async def _flush_client_ips(self) -> None:
        if self._client_ips is not None:
            await self._client_ips.flush()

    async def list_devices(self, user_id: str) -> list[dict[str, Any]]:
        await self._flush_client_ips()
        return [device_json(d) for d in await self._store.admin_user_data.get_devices(user_id)]

    async def get_device(self, user_id: str, device_id: str) -> dict[str, Any]:
        await self._flush_client_ips()
        device = await self._store.admin_user_data.get_device(user_id, device_id)
        if device is None:
            raise NotFound("Device not found")
        return device_json(device)

    async def rename(self, user_id: str, device_id: str, display_name: str | None) -> None:
        if not await self._store.users.set_device_display_name(user_id, device_id, display_name):
            raise NotFound("Device not found")

    async def delete(self, user_id: str, device_ids: list[str], auth: Any) -> None:
        """Delete devices (and log them out, and remove their keys) once the password is
        confirmed. Devices already gone are fine: the spec makes deletion idempotent."""
        await self._reauth.require_password(DELETE_DEVICES_OPERATION, auth, user_id)
        await self._device_removal.delete_devices(user_id, device_ids)
