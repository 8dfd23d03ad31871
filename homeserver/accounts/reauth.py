"""Re-authentication with the account password before a sensitive operation (deleting devices,
changing the password), through user-interactive auth with ``m.login.password``."""

from __future__ import annotations

import contextlib
from typing import Any

from homeserver.accounts.login import LoginService
from homeserver.accounts.uia import PASSWORD, StageChecker, StageFailed, UserInteractiveAuth
from homeserver.errors import Codes
from homeserver.ratelimit import RateLimiters, RateLimitExceeded


class Reauthenticator:
    def __init__(
        self, uia: UserInteractiveAuth, login: LoginService, ratelimiters: RateLimiters
    ) -> None:
        self._uia = uia
        self._login = login
        self._failures = ratelimiters.login_failed_attempts

    async def require_password(self, operation: str, auth: Any, user_id: str) -> None:
        """Return once ``auth`` proves ``user_id``'s password; else the UIA 401/400/403/429."""
        await self._uia.authenticate(
            operation, auth, stages=[PASSWORD], check=self._password_stage(user_id), user_id=user_id
        )

    def _password_stage(self, user_id: str) -> StageChecker:
        async def check(stage: str, auth: dict[str, Any]) -> None:
            identifier = auth.get("identifier")
            if identifier is None and "user" in auth:
                identifier = {"type": "m.id.user", "user": auth["user"]}
            if isinstance(identifier, dict):
                user = identifier.get("user")
                named = self._login.qualify(user) if isinstance(user, str) and user else None
                # Someone else's password proves nothing about this requester.
                if named is not None and named.lower() != user_id.lower():
                    raise StageFailed("Invalid username or password")
            password = auth.get("password")
            if password is None:
                raise StageFailed("Missing password", Codes.MISSING_PARAM)
            if not isinstance(password, str):
                raise StageFailed("Invalid password", Codes.INVALID_PARAM)
            await self._failures.peek(user_id.lower())
            if not await self._login.check_password(user_id, password):
                # Count the failure; this attempt itself still gets the truthful answer.
                with contextlib.suppress(RateLimitExceeded):
                    await self._failures.check(user_id.lower())
                raise StageFailed("Invalid username or password")

        return check
