"""``GET /capabilities``: room versions from the version table, and the account features."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.appkeys import CONFIG
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response
from homeserver.http.routes import add_client_route
from homeserver.room_versions import capabilities as room_version_capabilities


async def capabilities(request: web.Request) -> web.Response:
    await get_requester(request)
    config = request.app[CONFIG]
    body = {
        "capabilities": {
            "m.room_versions": room_version_capabilities(config.server.default_room_version),
            "m.change_password": {"enabled": True},
            "m.set_displayname": {"enabled": True},
            "m.set_avatar_url": {"enabled": True},
            "m.3pid_changes": {"enabled": False},
            "m.get_login_token": {"enabled": False},
        }
    }
    return json_response(body)


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "GET", "/capabilities", capabilities)
