"""``POST /user/{userId}/filter`` and ``GET /user/{userId}/filter/{filterId}``."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.appkeys import FILTERS
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response, read_json
from homeserver.http.routes import add_client_route


async def create_filter(request: web.Request) -> web.Response:
    filters = request.app[FILTERS]
    requester = await get_requester(request)
    user_id = request.match_info["user_id"]
    definition = await read_json(request)
    filter_id = await filters.create(requester.user_id, user_id, definition)
    return json_response({"filter_id": filter_id})


async def get_filter(request: web.Request) -> web.Response:
    filters = request.app[FILTERS]
    requester = await get_requester(request)
    definition = await filters.get(
        requester.user_id, request.match_info["user_id"], request.match_info["filter_id"]
    )
    return json_response(definition)


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "POST", "/user/{user_id}/filter", create_filter)
    add_client_route(router, "GET", "/user/{user_id}/filter/{filter_id}", get_filter)
