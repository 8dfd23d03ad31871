"""Shared-secret registration (``/_synapse/admin/v1/register``), Synapse's wire protocol, so
``register_new_matrix_user`` and Complement work against us.

``GET`` hands out a nonce (single use, 60 s); ``POST`` carries the nonce, the account and
``mac``: hex HMAC-SHA1 keyed with ``registration_shared_secret`` over
``nonce NUL username NUL password NUL ("admin" | "notadmin") [NUL user_type]``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from homeserver.accounts.registration import user_in_use
from homeserver.accounts.sessions import (
    CreatedAccount,
    DeviceRequest,
    create_account,
    hash_password_async,
)
from homeserver.accounts.usernames import (
    check_localpart,
    device_id_param,
    initial_device_name_param,
    password_param,
)
from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, Forbidden
from homeserver.ratelimit import RateLimitExceeded, TokenBucketLimiter
from homeserver.storage import Store

NONCE_LIFETIME_MS = 60_000
#: Unexpired nonces at once, over all clients: each is a database row, and anyone may ask for
#: one. Far more than operators registering users by hand ever hold.
MAX_OUTSTANDING_NONCES = 1000
#: The user types Synapse knows; a MAC may cover one, but we keep no per-type behaviour.
USER_TYPES = frozenset({"support", "bot"})


def registration_mac(
    secret: str, nonce: str, username: str, password: str, admin: bool, user_type: str | None
) -> str:
    mac = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha1)
    mac.update(nonce.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(username.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(password.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    if user_type is not None:
        mac.update(b"\x00")
        mac.update(user_type.encode("utf-8"))
    return mac.hexdigest()


@dataclass(frozen=True, slots=True)
class SharedSecretRequest:
    nonce: str
    username: str
    password: str
    admin: bool
    user_type: str | None
    displayname: str | None
    mac: str
    device: DeviceRequest
    inhibit_login: bool


def _string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise BadRequest(f"{name} must be specified", Codes.MISSING_PARAM)
    if not isinstance(value, str) or "\x00" in value:
        raise BadRequest(f"Invalid {name}", Codes.INVALID_PARAM)
    return value


def parse_shared_secret_request(body: dict[str, Any]) -> SharedSecretRequest:
    password = password_param(body.get("password"), required=True)
    assert password is not None
    admin = body.get("admin", False)
    if not isinstance(admin, bool):
        raise BadRequest("admin must be a boolean", Codes.INVALID_PARAM)
    user_type = body.get("user_type")
    if user_type is not None and user_type not in USER_TYPES:
        raise BadRequest("Invalid user type", Codes.INVALID_PARAM)
    displayname = body.get("displayname")
    if displayname is not None and not isinstance(displayname, str):
        raise BadRequest("Invalid displayname", Codes.INVALID_PARAM)
    inhibit_login = body.get("inhibit_login", False)
    if not isinstance(inhibit_login, bool):
        raise BadRequest("inhibit_login must be a boolean", Codes.INVALID_PARAM)
    return SharedSecretRequest(
        nonce=_string(body, "nonce"),
        username=_string(body, "username"),
        password=password,
        admin=admin,
        user_type=user_type,
        displayname=displayname,
        mac=_string(body, "mac"),
        device=DeviceRequest(
            device_id_param(body.get("device_id")),
            initial_device_name_param(body.get("initial_device_display_name")),
        ),
        inhibit_login=inhibit_login,
    )


class SharedSecretRegistration:
    def __init__(
        self,
        store: Store,
        server_name: str,
        secret: str | None,
        clock: WallClock,
        nonce_limiter: TokenBucketLimiter,
    ) -> None:
        self._store = store
        self._server_name = server_name
        self._secret = secret
        self._clock = clock
        self._nonce_limiter = nonce_limiter

    def _require_secret(self) -> str:
        if self._secret is None:
            raise BadRequest("Shared secret registration is not enabled", Codes.UNKNOWN)
        return self._secret

    async def new_nonce(self, client_address: str) -> str:
        self._require_secret()
        await self._nonce_limiter.check(client_address)
        nonce = secrets.token_hex(32)
        now = self._clock()
        stored = await self._store.ui_auth.add_nonce(
            nonce,
            now=now,
            expired_before=now - NONCE_LIFETIME_MS,
            most=MAX_OUTSTANDING_NONCES,
        )
        if not stored:
            # The oldest outstanding nonce expires within NONCE_LIFETIME_MS.
            raise RateLimitExceeded(NONCE_LIFETIME_MS, "Too many registration nonces pending")
        return nonce

    async def register(self, body: dict[str, Any]) -> CreatedAccount:
        secret = self._require_secret()
        request = parse_shared_secret_request(body)
        # The nonce is spent by this attempt whatever happens next, so a MAC cannot be guessed
        # against one nonce.
        expired_before = self._clock() - NONCE_LIFETIME_MS
        if not await self._store.ui_auth.take_nonce(request.nonce, expired_before=expired_before):
            raise BadRequest("unrecognised nonce", Codes.UNKNOWN)
        want = registration_mac(
            secret,
            request.nonce,
            request.username,
            request.password,
            request.admin,
            request.user_type,
        )
        if not hmac.compare_digest(want.encode("ascii"), request.mac.encode("utf-8")):
            raise Forbidden("HMAC incorrect")
        user_id = check_localpart(request.username.lower(), self._server_name)
        created = await create_account(
            self._store,
            user_id,
            await hash_password_async(request.password),
            now=self._clock(),
            admin=request.admin,
            displayname=request.displayname,
            login=None if request.inhibit_login else request.device,
        )
        if created is None:
            raise user_in_use()
        return created
