"""``GET`` and ``PUT /presence/{userId}/status``."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.appkeys import PRESENCE
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route


async def get_status(request: web.Request) -> web.Response:
    presence = request.app[PRESENCE]
    requester = await get_requester(request)
    body = await presence.get_presence(requester.user_id, request.match_info["user_id"])
    return json_response(body)


async def put_status(request: web.Request) -> web.Response:
    presence = request.app[PRESENCE]
    requester = await get_requester(request)
    body = await read_json_object(request)
    await presence.set_presence(requester.user_id, request.match_info["user_id"], body)
    return json_response({})


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "GET", "/presence/{user_id}/status", get_status)
    add_client_route(router, "PUT", "/presence/{user_id}/status", put_status)
