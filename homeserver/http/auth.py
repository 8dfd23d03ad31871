"""Who is calling: the access token from ``Authorization: Bearer`` or ``?access_token=``.

Tokens are looked up by their SHA-256 hash only (the store never sees a token).
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

from aiohttp import web

from homeserver.errors import Codes, MatrixError
from homeserver.http.appkeys import ACCOUNTS
from homeserver.http.client_address import client_address
from homeserver.logging import context as log_context
from homeserver.storage.users import hash_access_token


@dataclass(frozen=True, slots=True)
class Requester:
    user_id: str
    device_id: str | None
    is_admin: bool
    token_hash: str


#: where the requester is kept on the request once authenticated.
_REQUESTER_KEY: web.RequestKey[Requester] = web.RequestKey("homeserver.requester", Requester)


def _unauthorised(errcode: str, message: str, **extra: object) -> MatrixError:
    return MatrixError(HTTPStatus.UNAUTHORIZED, errcode, message, **extra)


def access_token_of(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorised(Codes.MISSING_TOKEN, "Invalid Authorization header")
        return token.strip()
    return request.query.get("access_token") or None


async def get_requester(request: web.Request) -> Requester:
    """The authenticated user, or 401 ``M_MISSING_TOKEN`` / ``M_UNKNOWN_TOKEN``."""
    cached = request.get(_REQUESTER_KEY)
    if cached is not None:
        return cached
    token = access_token_of(request)
    if token is None:
        raise _unauthorised(Codes.MISSING_TOKEN, "Missing access token")
    token_hash = hash_access_token(token)
    accounts = request.app[ACCOUNTS]
    owner = await accounts.login.token_owner(token_hash)
    if owner is None or owner.deactivated:
        raise _unauthorised(Codes.UNKNOWN_TOKEN, "Unknown access token", soft_logout=False)
    requester = Requester(owner.user_id, owner.device_id, owner.admin, token_hash)
    request[_REQUESTER_KEY] = requester
    # In memory only; written in batches (accounts/client_ips.py).
    accounts.client_ips.record(
        owner.user_id,
        token_hash,
        owner.device_id,
        client_address(request),
        request.headers.get("User-Agent", ""),
    )
    # Reset by the access-log middleware when the request ends.
    log_context.user_id.set(requester.user_id)
    return requester


def known_requester(request: web.Request) -> Requester | None:
    """The requester if this request has already been authenticated (for the access log)."""
    return request.get(_REQUESTER_KEY)


async def get_optional_requester(request: web.Request) -> Requester | None:
    if request.headers.get("Authorization") is None and "access_token" not in request.query:
        return None
    return await get_requester(request)
