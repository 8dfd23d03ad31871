"""``GET/POST /_synapse/admin/v1/register``: shared-secret registration (Synapse's protocol,
used by ``register_new_matrix_user`` and Complement)."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.appkeys import ACCOUNTS, CONFIG
from homeserver.http.client.register import registration_response
from homeserver.http.client_address import client_address
from homeserver.http.json_body import json_response, read_json_object

PATH = "/_synapse/admin/v1/register"


async def get_nonce(request: web.Request) -> web.Response:
    nonce = await request.app[ACCOUNTS].shared_secret.new_nonce(client_address(request))
    return json_response({"nonce": nonce})


async def register(request: web.Request) -> web.Response:
    accounts = request.app[ACCOUNTS]
    server_name = request.app[CONFIG].server_name
    created = await accounts.shared_secret.register(await read_json_object(request))
    return json_response(registration_response(created, server_name))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(PATH, get_nonce)
    router.add_post(PATH, register)
