"""``/register`` and ``/register/available``, following Synapse's order of checks: guest kind,
rate limit (checked, charged only for a created account), registration enabled, user name
free, then user-interactive auth (``m.login.dummy``: open registration needs no proof)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.accounts.registration_tokens import RegistrationTokens
from homeserver.accounts.sessions import (
    CreatedAccount,
    DeviceRequest,
    create_account,
    hash_password_async,
)
from homeserver.accounts.uia import (
    DUMMY,
    REGISTRATION_TOKEN,
    StageFailed,
    UserInteractiveAuth,
    accept_dummy,
)
from homeserver.accounts.usernames import (
    bool_param,
    check_localpart,
    device_id_param,
    initial_device_name_param,
    password_param,
    username_param,
)
from homeserver.clock import WallClock
from homeserver.config.registration import RegistrationConfig
from homeserver.errors import BadRequest, Codes, Forbidden, MatrixError
from homeserver.ratelimit import TokenBucketLimiter
from homeserver.storage import Store

REGISTER_OPERATION = "register"
#: How many generated numeric user IDs to try when racing other registrations.
_GENERATED_ID_ATTEMPTS = 50


def user_in_use() -> BadRequest:
    return BadRequest("User ID already taken.", Codes.USER_IN_USE)


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    kind: str
    username: str | None
    password: str | None
    auth: Any
    device: DeviceRequest
    inhibit_login: bool


def parse_register_request(body: dict[str, Any], kind: str) -> RegisterRequest:
    if kind not in ("user", "guest"):
        raise BadRequest(f"Do not understand membership kind: {kind}", Codes.UNRECOGNIZED)
    return RegisterRequest(
        kind=kind,
        username=username_param(body.get("username")),
        password=password_param(body.get("password")),
        auth=body.get("auth"),
        device=DeviceRequest(
            device_id_param(body.get("device_id")),
            initial_device_name_param(body.get("initial_device_display_name")),
        ),
        inhibit_login=bool_param(body, "inhibit_login", False),
    )


class RegistrationService:
    def __init__(
        self,
        store: Store,
        server_name: str,
        config: RegistrationConfig,
        clock: WallClock,
        limiter: TokenBucketLimiter,
        uia: UserInteractiveAuth,
        tokens: RegistrationTokens | None = None,
    ) -> None:
        #: with ``registration_requires_token``, the tokens the stage spends.
        self._tokens = tokens
        self._store = store
        self._server_name = server_name
        self._config = config
        self._clock = clock
        self._limiter = limiter
        self._uia = uia

    async def check_available(self, username: Any) -> None:
        """Raise 400 ``M_INVALID_USERNAME`` / ``M_USER_IN_USE`` unless ``username`` is free.
        (Unlike ``/register``, the name is not lowercased: ``Alice`` is simply invalid.)"""
        if not isinstance(username, str):
            raise BadRequest("Missing parameter: username", Codes.MISSING_PARAM)
        user_id = check_localpart(username, self._server_name)
        if await self._store.users.find_user_id_case_insensitive(user_id) is not None:
            raise user_in_use()

    async def register(self, request: RegisterRequest, client_ip: str) -> CreatedAccount:
        if request.kind == "guest":
            raise Forbidden("Guest access is disabled", Codes.GUEST_ACCESS_FORBIDDEN)
        await self._limiter.peek(client_ip)
        if not self._config.open_registration:
            raise Forbidden("Registration has been disabled")
        user_id = None
        if request.username is not None:
            # Checked before authentication so a client learns of a taken name at once.
            user_id = check_localpart(request.username, self._server_name)
            if await self._store.users.find_user_id_case_insensitive(user_id) is not None:
                raise user_in_use()
        token_session = None
        if self._config.registration_requires_token and self._tokens is not None:
            token_session = await self._uia.authenticate_flow(
                REGISTER_OPERATION,
                request.auth,
                flow=[REGISTRATION_TOKEN, DUMMY],
                check=self._check_stage,
                completed_stages=self._completed_stages,
            )
        else:
            await self._uia.authenticate(
                REGISTER_OPERATION, request.auth, stages=[DUMMY], check=accept_dummy
            )
        await self._limiter.check(client_ip)
        created = await self._create(request, user_id)
        if token_session is not None and self._tokens is not None:
            # The token's pending use becomes a completed one (Synapse's counting).
            await self._tokens.store.complete(token_session)
        return created

    async def _check_stage(self, stage: str, auth: dict[str, Any], session_id: str) -> None:
        if stage == DUMMY:
            return
        assert self._tokens is not None
        token = auth.get("token")
        if not isinstance(token, str):
            raise BadRequest("Missing parameter: token", Codes.MISSING_PARAM)
        if not await self._tokens.use_in_session(session_id, token):
            raise StageFailed("Invalid registration token", Codes.UNAUTHORIZED)

    async def _completed_stages(self, session_id: str) -> set[str]:
        assert self._tokens is not None
        used = await self._tokens.store.session_token(session_id)
        return set() if used is None else {REGISTRATION_TOKEN}

    async def _create(self, request: RegisterRequest, user_id: str | None) -> CreatedAccount:
        password_hash = None
        if request.password is not None:
            password_hash = await hash_password_async(request.password)
        login = None if request.inhibit_login else request.device
        if user_id is not None:
            created = await create_account(
                self._store, user_id, password_hash, now=self._clock(), login=login
            )
            if created is None:
                raise user_in_use()  # lost a race with another registration
            return created
        return await self._register_generated(password_hash, login)

    async def _register_generated(
        self, password_hash: str | None, login: DeviceRequest | None
    ) -> CreatedAccount:
        """No user name asked for: a numeric one, as Synapse gives."""
        candidate = await self._store.users.count_users() + 1
        for _ in range(_GENERATED_ID_ATTEMPTS):
            user_id = f"@{candidate}:{self._server_name}"
            created = await create_account(
                self._store, user_id, password_hash, now=self._clock(), login=login
            )
            if created is not None:
                return created
            candidate += 1
        raise MatrixError(500, Codes.UNKNOWN, "Could not generate a user ID")
