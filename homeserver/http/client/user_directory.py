"""``POST /user_directory/search``."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.user_directory import parse_search_body
from homeserver.http.appkeys import USER_DIRECTORY
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route


async def search(request: web.Request) -> web.Response:
    directory = request.app[USER_DIRECTORY]
    requester = await get_requester(request)
    term, limit = parse_search_body(await read_json_object(request))
    return json_response(await directory.search(requester.user_id, term, limit))


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "POST", "/user_directory/search", search)
