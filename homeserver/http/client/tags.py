"""``/user/{userId}/rooms/{roomId}/tags`` (room tags, kept as ``m.tag`` room account data)."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.appkeys import ACCOUNT_DATA
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route


async def get_tags(request: web.Request) -> web.Response:
    account_data = request.app[ACCOUNT_DATA]
    requester = await get_requester(request)
    body = await account_data.get_tags(
        requester.user_id, request.match_info["user_id"], request.match_info["room_id"]
    )
    return json_response(body)


async def put_tag(request: web.Request) -> web.Response:
    account_data = request.app[ACCOUNT_DATA]
    requester = await get_requester(request)
    body = await read_json_object(request)
    await account_data.put_tag(
        requester.user_id,
        request.match_info["user_id"],
        request.match_info["room_id"],
        request.match_info["tag"],
        body,
    )
    return json_response({})


async def delete_tag(request: web.Request) -> web.Response:
    account_data = request.app[ACCOUNT_DATA]
    requester = await get_requester(request)
    await account_data.delete_tag(
        requester.user_id,
        request.match_info["user_id"],
        request.match_info["room_id"],
        request.match_info["tag"],
    )
    return json_response({})


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "GET", "/user/{user_id}/rooms/{room_id}/tags", get_tags)
    add_client_route(router, "PUT", "/user/{user_id}/rooms/{room_id}/tags/{tag}", put_tag)
    add_client_route(router, "DELETE", "/user/{user_id}/rooms/{room_id}/tags/{tag}", delete_tag)
