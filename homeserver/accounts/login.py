"""``/login`` with ``m.login.password``, ``/logout``, and the password check UIA reuses.

Unknown users and wrong passwords get the same 403 and take the same time (an argon2 check
runs either way), so the answer does not reveal which accounts exist.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from homeserver.accounts.device_removal import DeviceRemoval
from homeserver.accounts.sessions import (
    DeviceRequest,
    LoginSession,
    issue_session,
    verify_password_async,
)
from homeserver.accounts.usernames import (
    device_id_param,
    initial_device_name_param,
    password_param,
)
from homeserver.clock import WallClock
from homeserver.crypto.passwords import hash_password
from homeserver.errors import BadRequest, Codes, Forbidden, MatrixError
from homeserver.ratelimit import RateLimiters, RateLimitExceeded
from homeserver.storage import Store
from homeserver.storage.users import TokenOwner

PASSWORD_LOGIN = "m.login.password"
USER_DEACTIVATED = "M_USER_DEACTIVATED"
INVALID_CREDENTIALS = "Invalid username or password"


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when the user is unknown (equal timing)."""
    return hash_password("not the password of anyone")


@dataclass(frozen=True, slots=True)
class LoginRequest:
    user: str
    password: str
    device: DeviceRequest


def parse_login_request(body: dict[str, Any]) -> LoginRequest:
    """The body of ``POST /login``; 400 for anything malformed."""
    login_type = body.get("type")
    if login_type != PASSWORD_LOGIN:
        raise BadRequest("Unknown login type", Codes.UNKNOWN)
    identifier = body.get("identifier")
    if identifier is None and "user" in body:
        identifier = {"type": "m.id.user", "user": body["user"]}  # the legacy form
    if identifier is None:
        raise BadRequest("Missing parameter: identifier", Codes.MISSING_PARAM)
    if not isinstance(identifier, dict):
        raise BadRequest("identifier must be an object", Codes.INVALID_PARAM)
    if identifier.get("type") != "m.id.user":
        raise BadRequest("Unknown login identifier type", Codes.UNKNOWN)
    user = identifier.get("user")
    if user is None:
        raise BadRequest("Missing parameter: identifier.user", Codes.MISSING_PARAM)
    if not isinstance(user, str) or not user:
        raise BadRequest("identifier.user must be a non-empty string", Codes.INVALID_PARAM)
    password = password_param(body.get("password"), required=True)
    assert password is not None
    device = DeviceRequest(
        device_id_param(body.get("device_id")),
        initial_device_name_param(body.get("initial_device_display_name")),
    )
    return LoginRequest(user, password, device)


class LoginService:
    def __init__(
        self,
        store: Store,
        server_name: str,
        clock: WallClock,
        ratelimiters: RateLimiters,
        device_removal: DeviceRemoval,
    ) -> None:
        self._store = store
        self._device_removal = device_removal
        self._server_name = server_name
        self._clock = clock
        self._ratelimiters = ratelimiters

    def qualify(self, user: str) -> str:
        """A login's ``user`` (a localpart or a full user ID) as a user ID."""
        return user if user.startswith("@") else f"@{user}:{self._server_name}"

    async def check_password(self, user_id: str, password: str) -> bool:
        """Whether ``user_id`` is a local, active user whose password is ``password``."""
        record = await self._store.users.get_user(user_id)
        stored = record.password_hash if record is not None else None
        matches = await verify_password_async(stored or _dummy_hash(), password)
        return matches and stored is not None and record is not None

    async def login(self, request: LoginRequest, client_ip: str) -> LoginSession:
        await self._ratelimiters.login_address.check(client_ip)
        user_id = self.qualify(request.user)
        # Accept another capitalisation of a registered name, as Synapse does.
        user_id = await self._store.users.find_user_id_case_insensitive(user_id) or user_id
        failures = self._ratelimiters.login_failed_attempts
        await failures.peek(user_id.lower())
        if not await self.check_password(user_id, request.password):
            # Count the failure; this attempt itself still gets the truthful 403.
            with contextlib.suppress(RateLimitExceeded):
                await failures.check(user_id.lower())
            raise Forbidden(INVALID_CREDENTIALS)
        record = await self._store.users.get_user(user_id)
        if record is None or record.deactivated:
            raise MatrixError(
                HTTPStatus.FORBIDDEN, USER_DEACTIVATED, "This account has been deactivated"
            )
        await self._ratelimiters.login_account.check(user_id.lower())
        return await issue_session(self._store, user_id, request.device, now=self._clock())

    async def token_owner(self, token_hash: str) -> TokenOwner | None:
        """Whose access token this is (and their device), or None for an unknown or expired
        token (an admin's login-as token may carry ``valid_until_ms``)."""
        owner = await self._store.users.get_token_owner(token_hash)
        expiry = None if owner is None else owner.valid_until_ms
        if expiry is not None and expiry <= self._clock():
            return None
        return owner

    async def logout(self, user_id: str, device_id: str | None, token_hash: str) -> None:
        """End this session: the device goes with its token (spec), a device-less token alone."""
        if device_id is None:
            await self._store.users.delete_access_token(token_hash)
        else:
            await self._device_removal.delete_devices(user_id, [device_id])

    async def logout_all(self, user_id: str) -> None:
        await self._device_removal.delete_all_devices(user_id)
        # As Synapse: an admin logging out everywhere also ends the tokens it made to log in
        # as other users.
        await self._store.users.delete_puppet_tokens(user_id)
