"""``POST /account/password``: a new password after re-entering the old one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.accounts.device_removal import DeviceRemoval
from homeserver.accounts.reauth import Reauthenticator
from homeserver.accounts.sessions import hash_password_async
from homeserver.accounts.usernames import bool_param, password_param
from homeserver.storage import Store

CHANGE_PASSWORD_OPERATION = "change_password"


@dataclass(frozen=True, slots=True)
class ChangePasswordRequest:
    new_password: str | None
    logout_devices: bool
    auth: Any


def parse_change_password(body: dict[str, Any]) -> ChangePasswordRequest:
    return ChangePasswordRequest(
        # Checked for presence only after authentication, as the first round trip (asking for
        # the flows) may come without it.
        new_password=password_param(body.get("new_password"), "new_password"),
        logout_devices=bool_param(body, "logout_devices", True),
        auth=body.get("auth"),
    )


class AccountService:
    def __init__(
        self, store: Store, reauth: Reauthenticator, device_removal: DeviceRemoval
    ) -> None:
        self._store = store
        self._reauth = reauth
        self._device_removal = device_removal

    async def change_password(
        self, user_id: str, device_id: str | None, request: ChangePasswordRequest
    ) -> None:
        new_password = request.new_password
        if request.auth is not None and new_password is None:
            # Refused before the password is checked, so the session is not spent for nothing.
            password_param(None, "new_password", required=True)
        await self._reauth.require_password(CHANGE_PASSWORD_OPERATION, request.auth, user_id)
        assert new_password is not None
        await self._store.users.set_password_hash(user_id, await hash_password_async(new_password))
        if request.logout_devices:
            # Every other session ends; the one that changed the password stays (spec).
            await self._device_removal.delete_all_devices(user_id, except_device_id=device_id)
