"""``PUT /sendToDevice/{eventType}/{txnId}``."""

from __future__ import annotations

from aiohttp import web

from homeserver.e2e.to_device import ToDeviceSend, parse_messages
from homeserver.http.appkeys import TO_DEVICE
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route


async def send_to_device(request: web.Request) -> web.Response:
    to_device = request.app[TO_DEVICE]
    requester = await get_requester(request)
    body = await read_json_object(request)
    await to_device.send(
        ToDeviceSend(
            sender=requester.user_id,
            sender_device=requester.device_id,
            event_type=request.match_info["event_type"],
            txn_id=request.match_info["txn_id"],
            messages=parse_messages(body),
        )
    )
    return json_response({})


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "PUT", "/sendToDevice/{event_type}/{txn_id}", send_to_device)
