"""``POST /search``: server-side search of room events (the ``room_events`` category)."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.appkeys import ROOM_SEARCH
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route
from homeserver.rooms.search_request import parse_search_request


async def search(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    parsed = parse_search_request(await read_json_object(request))
    body = await request.app[ROOM_SEARCH].search(
        requester.user_id, parsed, request.query.get("next_batch") or None
    )
    return json_response(body)


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "POST", "/search", search)
