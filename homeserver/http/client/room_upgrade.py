"""``POST /rooms/{roomId}/upgrade``: parse, hand to the room-upgrade service, answer
``{replacement_room}``."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.appkeys import ROOM_UPGRADES
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route


async def upgrade_room(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await read_json_object(request)
    replacement = await request.app[ROOM_UPGRADES].upgrade_room(
        requester.user_id, request.match_info["room_id"], body
    )
    return json_response({"replacement_room": replacement})


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "POST", "/rooms/{room_id}/upgrade", upgrade_room)
