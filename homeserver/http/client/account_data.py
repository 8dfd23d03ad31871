"""Account data: ``/user/{userId}/account_data/{type}`` (global) and
``/user/{userId}/rooms/{roomId}/account_data/{type}`` (per room)."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.appkeys import ACCOUNT_DATA
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route
from homeserver.storage.account_data import GLOBAL


def _room_of(request: web.Request) -> str:
    return request.match_info.get("room_id", GLOBAL)


async def get_account_data(request: web.Request) -> web.Response:
    account_data = request.app[ACCOUNT_DATA]
    requester = await get_requester(request)
    content = await account_data.get(
        requester.user_id,
        request.match_info["user_id"],
        request.match_info["type"],
        _room_of(request),
    )
    return json_response(content)


async def put_account_data(request: web.Request) -> web.Response:
    account_data = request.app[ACCOUNT_DATA]
    requester = await get_requester(request)
    body = await read_json_object(request)
    await account_data.put(
        requester.user_id,
        request.match_info["user_id"],
        request.match_info["type"],
        body,
        _room_of(request),
    )
    return json_response({})


def add_routes(router: web.UrlDispatcher) -> None:
    for path in (
        "/user/{user_id}/account_data/{type}",
        "/user/{user_id}/rooms/{room_id}/account_data/{type}",
    ):
        add_client_route(router, "GET", path, get_account_data)
        add_client_route(router, "PUT", path, put_account_data)
