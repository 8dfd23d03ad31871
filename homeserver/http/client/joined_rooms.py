"""``GET /joined_rooms``: the rooms the requester is joined to."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.appkeys import ROOM_EVENTS
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response
from homeserver.http.routes import add_client_route


async def joined_rooms(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    return json_response(await request.app[ROOM_EVENTS].reader.joined_rooms(requester.user_id))


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "GET", "/joined_rooms", joined_rooms)
