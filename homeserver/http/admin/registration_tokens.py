"""Synapse's registration tokens admin API (``synapse/rest/admin/registration_tokens.py``),
server admins only:

* ``GET /_synapse/admin/v1/registration_tokens[?valid=true|false]``;
* ``POST …/registration_tokens/new`` (``token`` or ``length``, ``uses_allowed``,
  ``expiry_time``);
* ``GET``/``PUT``/``DELETE …/registration_tokens/{token}``.

And the client API's ``GET /_matrix/client/v1/register/m.login.registration_token/validity``
(no token needed; limited per address as Synapse's ``rc_registration_token_validity``).
"""

from __future__ import annotations

from aiohttp import web

from homeserver.http.admin.auth import require_admin
from homeserver.http.admin.params import bool_param, string_param
from homeserver.http.appkeys import RATELIMITERS, REGISTRATION_TOKENS
from homeserver.http.client_address import client_address
from homeserver.http.json_body import json_response, read_json_object

PATH = "/_synapse/admin/v1/registration_tokens"
VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity"


async def list_tokens(request: web.Request) -> web.Response:
    await require_admin(request)
    valid = bool_param(request, "valid")
    return json_response(await request.app[REGISTRATION_TOKENS].list_tokens(valid))


async def new_token(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json_object(request)
    return json_response(await request.app[REGISTRATION_TOKENS].create(body))


async def get_token(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await request.app[REGISTRATION_TOKENS].get(request.match_info["token"]))


async def put_token(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json_object(request)
    tokens = request.app[REGISTRATION_TOKENS]
    return json_response(await tokens.update(request.match_info["token"], body))


async def delete_token(request: web.Request) -> web.Response:
    await require_admin(request)
    await request.app[REGISTRATION_TOKENS].delete(request.match_info["token"])
    return json_response({})


async def validity(request: web.Request) -> web.Response:
    await request.app[RATELIMITERS].registration_token_validity.check(client_address(request))
    token = string_param(request, "token")
    return json_response(await request.app[REGISTRATION_TOKENS].validity(token))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(PATH, list_tokens)
    router.add_post(f"{PATH}/new", new_token)
    router.add_get(f"{PATH}/{{token}}", get_token)
    router.add_put(f"{PATH}/{{token}}", put_token)
    router.add_delete(f"{PATH}/{{token}}", delete_token)


def add_client_routes(router: web.UrlDispatcher) -> None:
    router.add_get(VALIDITY, validity)
