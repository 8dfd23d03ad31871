"""``POST /_synapse/admin/v1/send_server_notice`` and ``PUT …/send_server_notice/{txnId}``
(Synapse's ``rest/admin/server_notice_servlet.py``): ``{"user_id", "content", "type"?,
"state_key"?}`` → ``{"event_id"}``; 400 when server notices are not configured."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.admin.auth import require_admin
from homeserver.http.appkeys import SERVER_NOTICES
from homeserver.http.json_body import json_response, read_json_object

PATH = "/_synapse/admin/v1/send_server_notice"


async def send(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json_object(request)
    return json_response(await request.app[SERVER_NOTICES].send_request(body))


async def send_with_txn(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    body = await read_json_object(request)
    key = (requester.token_hash, request.match_info["txn_id"])
    return json_response(await request.app[SERVER_NOTICES].send_request(body, txn_key=key))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post(PATH, send)
    router.add_put(PATH + "/{txn_id}", send_with_txn)
