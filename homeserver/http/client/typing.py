"""``PUT /rooms/{roomId}/typing/{userId}``."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.appkeys import TYPING
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route


async def put_typing(request: web.Request) -> web.Response:
    typing = request.app[TYPING]
    requester = await get_requester(request)
    body = await read_json_object(request)
    await typing.set_typing(
        requester.user_id, request.match_info["room_id"], request.match_info["user_id"], body
    )
    return json_response({})


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "PUT", "/rooms/{room_id}/typing/{user_id}", put_typing)
