"""Registration tokens (Synapse's ``rest/admin/registration_tokens.py`` and
``docs/usage/administration/admin_api/registration_tokens.md``): the admin API's list, create,
read, update and delete, with Synapse's checks; ``uses_allowed`` null is unlimited and
``expiry_time`` (ms since the epoch) null never expires; the validity check of the client API;
and the registration stage's use of one (``accounts/registration.py``).
"""

from __future__ import annotations

import re
import secrets
import string
from typing import Any

from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, NotFound
from homeserver.storage.registration_tokens import RegistrationToken, RegistrationTokensStore

#: Synapse's alphabet and limits for tokens.
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")
_ALPHABET = string.ascii_letters + string.digits + "._~-"
DEFAULT_LENGTH = 16
MAX_LENGTH = 64
#: The largest integer JSON carries exactly; larger ones are refused.
MAX_JSON_INT = 2**53 - 1
#: Generated tokens that collide with existing ones are tried again this many times.
_ATTEMPTS = 5


def token_json(token: RegistrationToken) -> dict[str, Any]:
    return {
        "token": token.token,
        "uses_allowed": token.uses_allowed,
        "pending": token.pending,
        "completed": token.completed,
        "expiry_time": token.expiry_time,
    }


def _uses_allowed(body: dict[str, Any]) -> int | None:
    value = body.get("uses_allowed")
    if value is not None and (type(value) is not int or value < 0):
        raise BadRequest("uses_allowed must be a non-negative integer or null", Codes.INVALID_PARAM)
    return value


def _expiry_time(body: dict[str, Any], now: int) -> int | None:
    value = body.get("expiry_time")
    if value is not None and (type(value) is not int or not 0 <= value <= MAX_JSON_INT):
        raise BadRequest("expiry_time must be an integer or null", Codes.INVALID_PARAM)
    if value is not None and value < now:
        raise BadRequest("expiry_time must not be in the past", Codes.INVALID_PARAM)
    return value


class RegistrationTokens:
    def __init__(self, store: RegistrationTokensStore, clock: WallClock) -> None:
        self.store = store
        self.clock = clock

    async def list_tokens(self, valid: bool | None) -> dict[str, Any]:
        now = self.clock()
        tokens = await self.store.list_tokens()
        if valid is not None:
            tokens = [t for t in tokens if t.valid_at(now) == valid]
        return {"registration_tokens": [token_json(t) for t in tokens]}

    async def get(self, token: str) -> dict[str, Any]:
        found = await self.store.get(token) if TOKEN_PATTERN.match(token) else None
        if found is None:
            raise NotFound(f"No such registration token: {token}")
        return token_json(found)

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        uses_allowed = _uses_allowed(body)
        expiry_time = _expiry_time(body, self.clock())
        if "token" in body:
            token = body["token"]
            if not isinstance(token, str) or not TOKEN_PATTERN.match(token):
                raise BadRequest(
                    "token must consist only of characters matched by the regex"
                    " [A-Za-z0-9-_] and be at most 64 characters",
                    Codes.INVALID_PARAM,
                )
            if not await self.store.create(token, uses_allowed, expiry_time):
                raise BadRequest(f"Token already exists: {token}", Codes.INVALID_PARAM)
            return await self.get(token)
        length = body.get("length", DEFAULT_LENGTH)
        if type(length) is not int or not 0 < length <= MAX_LENGTH:
            raise BadRequest(
                f"length must be an integer between 1 and {MAX_LENGTH}", Codes.INVALID_PARAM
            )
        for _ in range(_ATTEMPTS):
            token = "".join(secrets.choice(_ALPHABET) for _ in range(length))
            if await self.store.create(token, uses_allowed, expiry_time):
                return await self.get(token)
        raise BadRequest("Could not find a free token of that length", Codes.UNKNOWN)

    async def update(self, token: str, body: dict[str, Any]) -> dict[str, Any]:
        changes: dict[str, int | None] = {}
        if "uses_allowed" in body:
            changes["uses_allowed"] = _uses_allowed(body)
        if "expiry_time" in body:
            changes["expiry_time"] = _expiry_time(body, self.clock())
        updated = await self.store.update(token, changes) if TOKEN_PATTERN.match(token) else None
        if updated is None:
            raise NotFound(f"No such registration token: {token}")
        return token_json(updated)

    async def delete(self, token: str) -> None:
        if not TOKEN_PATTERN.match(token) or not await self.store.delete(token):
            raise NotFound(f"No such registration token: {token}")

    async def use_in_session(self, session_id: str, token: str) -> bool:
        """The registration stage: one pending use of a valid ``token`` for this session."""
        if not TOKEN_PATTERN.match(token):
            return False
        return await self.store.use_in_session(session_id, token, self.clock())

    async def validity(self, token: Any) -> dict[str, Any]:
        """``GET /_matrix/client/v1/register/m.login.registration_token/validity``."""
        if not isinstance(token, str):
            raise BadRequest("Missing string query parameter 'token'", Codes.MISSING_PARAM)
        found = await self.store.get(token) if TOKEN_PATTERN.match(token) else None
        return {"valid": found is not None and found.valid_at(self.clock())}
