"""``GET /sync``."""

from __future__ import annotations

from aiohttp import web

from homeserver.ephemeral.presence import STATES as PRESENCE_STATES
from homeserver.errors import BadRequest, Codes
from homeserver.http.appkeys import FILTERS, SYNC
from homeserver.http.auth import get_requester
from homeserver.http.client.room_params import txn_scope
from homeserver.http.json_body import json_response
from homeserver.http.routes import add_client_route
from homeserver.streams.tokens import StreamToken
from homeserver.sync.sync import MAX_TIMEOUT_MS, SyncRequest

_BOOLEANS = {"true": True, "false": False}


async def sync(request: web.Request) -> web.Response:
    filters = request.app[FILTERS]
    sync_service = request.app[SYNC]
    requester = await get_requester(request)
    query = request.query
    since_text = query.get("since")
    since = StreamToken.parse(since_text) if since_text else None
    timeout_text = query.get("timeout", "0") or "0"
    try:
        timeout_ms = int(timeout_text)
    except ValueError:
        raise BadRequest("'timeout' must be an integer", Codes.INVALID_PARAM) from None
    full_state = _BOOLEANS.get(query.get("full_state", "false"))
    if full_state is None:
        raise BadRequest("'full_state' must be 'true' or 'false'", Codes.INVALID_PARAM)
    set_presence = query.get("set_presence", "online")
    if set_presence not in PRESENCE_STATES:
        raise BadRequest(
            f"'set_presence' must be one of {', '.join(PRESENCE_STATES)}", Codes.INVALID_PARAM
        )
    sync_filter = await filters.resolve(requester.user_id, query.get("filter"))
    body = await sync_service.sync(
        SyncRequest(
            user_id=requester.user_id,
            device_id=requester.device_id,
            since=since,
            timeout_ms=max(0, min(timeout_ms, MAX_TIMEOUT_MS)),
            full_state=full_state,
            filter=sync_filter,
            txn_scope=txn_scope(requester),
            set_presence=set_presence,
        )
    )
    return json_response(body)


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "GET", "/sync", sync)
