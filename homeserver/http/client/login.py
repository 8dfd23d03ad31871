"""``GET/POST /login``, ``POST /logout``, ``POST /logout/all``."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.login import PASSWORD_LOGIN, parse_login_request
from homeserver.http.appkeys import ACCOUNTS, CONFIG
from homeserver.http.auth import get_requester
from homeserver.http.client_address import client_address
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route


async def login_flows(request: web.Request) -> web.Response:
    return json_response({"flows": [{"type": PASSWORD_LOGIN}]})


async def login(request: web.Request) -> web.Response:
    accounts = request.app[ACCOUNTS]
    server_name = request.app[CONFIG].server_name
    parsed = parse_login_request(await read_json_object(request))
    session = await accounts.login.login(parsed, client_address(request))
    return json_response(
        {
            "user_id": session.user_id,
            "access_token": session.access_token,
            "device_id": session.device_id,
            "home_server": server_name,
        }
    )


async def logout(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    await request.app[ACCOUNTS].login.logout(
        requester.user_id, requester.device_id, requester.token_hash
    )
    return json_response({})


async def logout_all(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    await request.app[ACCOUNTS].login.logout_all(requester.user_id)
    return json_response({})


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "GET", "/login", login_flows)
    add_client_route(router, "POST", "/login", login)
    add_client_route(router, "POST", "/logout", logout)
    add_client_route(router, "POST", "/logout/all", logout_all)
