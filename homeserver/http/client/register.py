"""``POST /register`` and ``GET /register/available``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.accounts.registration import parse_register_request
from homeserver.accounts.sessions import CreatedAccount
from homeserver.http.appkeys import ACCOUNTS, CONFIG
from homeserver.http.client_address import client_address
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route


def registration_response(created: CreatedAccount, server_name: str) -> dict[str, Any]:
    body: dict[str, Any] = {"user_id": created.user_id, "home_server": server_name}
    if created.session is not None:
        body["access_token"] = created.session.access_token
        body["device_id"] = created.session.device_id
    return body


async def register(request: web.Request) -> web.Response:
    accounts = request.app[ACCOUNTS]
    server_name = request.app[CONFIG].server_name
    body = await read_json_object(request)
    parsed = parse_register_request(body, request.query.get("kind", "user"))
    created = await accounts.registration.register(parsed, client_address(request))
    return json_response(registration_response(created, server_name))


async def available(request: web.Request) -> web.Response:
    await request.app[ACCOUNTS].registration.check_available(request.query.get("username"))
    return json_response({"available": True})


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "POST", "/register", register)
    add_client_route(router, "GET", "/register/available", available)
