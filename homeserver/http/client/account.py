"""``GET /account/whoami`` and ``POST /account/password``."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.account import parse_change_password
from homeserver.http.appkeys import ACCOUNTS
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route


async def whoami(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body: dict[str, object] = {"user_id": requester.user_id, "is_guest": False}
    if requester.device_id is not None:
        body["device_id"] = requester.device_id
    return json_response(body)


async def change_password(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    parsed = parse_change_password(await read_json_object(request))
    await request.app[ACCOUNTS].account.change_password(
        requester.user_id, requester.device_id, parsed
    )
    return json_response({})


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "GET", "/account/whoami", whoami)
    add_client_route(router, "POST", "/account/password", change_password)
