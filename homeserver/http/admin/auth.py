"""Who may call the admin API: server admins only (as Synapse's ``assert_requester_is_admin``)."""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import Forbidden
from homeserver.http.auth import Requester, get_requester

NOT_ADMIN = "You are not a server admin"


async def require_admin(request: web.Request) -> Requester:
    """The requester, if a server admin: 401 without a valid token, 403 ``M_FORBIDDEN``
    otherwise."""
    requester = await get_requester(request)
    if not requester.is_admin:
        raise Forbidden(NOT_ADMIN)
    return requester
