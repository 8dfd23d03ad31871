"""``PUT /rooms/{roomId}/send/{eventType}/{txnId}``: send a message event, idempotently."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.appkeys import ROOM_EVENTS
from homeserver.http.auth import get_requester
from homeserver.http.client.room_params import txn_scope
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route


async def send_message(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    content = await read_json_object(request)
    event_id = await request.app[ROOM_EVENTS].send_message(
        requester.user_id,
        txn_scope(requester),
        request.match_info["room_id"],
        request.match_info["event_type"],
        request.match_info["txn_id"],
        content,
    )
    return json_response({"event_id": event_id})


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "PUT", "/rooms/{room_id}/send/{event_type}/{txn_id}", send_message)
