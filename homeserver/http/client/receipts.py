"""``POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`` and
``POST /rooms/{roomId}/read_markers``."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.appkeys import RECEIPTS
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route


async def post_receipt(request: web.Request) -> web.Response:
    receipts = request.app[RECEIPTS]
    requester = await get_requester(request)
    body = await read_json_object(request)
    await receipts.send_receipt(
        requester.user_id,
        request.match_info["room_id"],
        request.match_info["receipt_type"],
        request.match_info["event_id"],
        body,
    )
    return json_response({})


async def post_read_markers(request: web.Request) -> web.Response:
    receipts = request.app[RECEIPTS]
    requester = await get_requester(request)
    body = await read_json_object(request)
    await receipts.set_read_markers(requester.user_id, request.match_info["room_id"], body)
    return json_response({})


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(
        router, "POST", "/rooms/{room_id}/receipt/{receipt_type}/{event_id}", post_receipt
    )
    add_client_route(router, "POST", "/rooms/{room_id}/read_markers", post_read_markers)
