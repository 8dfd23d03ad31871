"""``GET /pushers``, ``POST /pushers/set`` and ``GET /notifications``."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.appkeys import NOTIFICATIONS, PUSHERS
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route
from homeserver.sync.notifications import parse_from, parse_limit


async def get_pushers(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    pushers = await request.app[PUSHERS].get_pushers(requester.user_id)
    return json_response({"pushers": pushers})


async def set_pusher(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await read_json_object(request)
    await request.app[PUSHERS].set_pusher(requester.user_id, body)
    return json_response({})


async def get_notifications(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    query = request.query
    body = await request.app[NOTIFICATIONS].get_notifications(
        requester.user_id,
        parse_from(query.get("from")),
        parse_limit(query.get("limit")),
        query.get("only"),
    )
    return json_response(body)


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "GET", "/pushers", get_pushers)
    add_client_route(router, "POST", "/pushers/set", set_pusher)
    add_client_route(router, "GET", "/notifications", get_notifications)
