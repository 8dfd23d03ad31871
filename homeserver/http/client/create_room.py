"""``POST /createRoom``: parse, hand to the room-creation service, answer ``{room_id}``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.http.appkeys import ROOM_CREATION
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route


async def create_room(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await read_json_object(request)
    created = await request.app[ROOM_CREATION].create_room(requester.user_id, body)
    response: dict[str, Any] = {"room_id": created.room_id}
    if created.alias is not None:
        response["room_alias"] = created.alias  # as Synapse answers
    return json_response(response)


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "POST", "/createRoom", create_room)
