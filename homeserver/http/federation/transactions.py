"""``PUT /_matrix/federation/v1/send/{txnId}``: a transaction of PDUs and EDUs from a server."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.appkeys import FEDERATION_TRANSACTIONS
from homeserver.http.federation.auth import authenticate_request
from homeserver.http.json_body import json_response, read_json_object


async def send_transaction(request: web.Request) -> web.Response:
    origin = await authenticate_request(request)
    body = await read_json_object(request)
    response = await request.app[FEDERATION_TRANSACTIONS].on_send(
        origin, request.match_info["txn_id"], body
    )
    return json_response(response)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_route("PUT", "/_matrix/federation/v1/send/{txn_id}", send_transaction)
