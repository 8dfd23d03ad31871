"""Room state: ``GET /rooms/{roomId}/state``, and ``GET``/``PUT``
``/rooms/{roomId}/state/{eventType}[/{stateKey}]`` (no state key, or an empty one, is ``""``)."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.appkeys import ROOM_EVENTS
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route


def _state_key(request: web.Request) -> str:
    return request.match_info.get("state_key", "")


async def get_state(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    events = await request.app[ROOM_EVENTS].get_state(
        requester.user_id, request.match_info["room_id"]
    )
    return json_response(events)


async def get_state_event(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    content = await request.app[ROOM_EVENTS].get_state_event(
        requester.user_id,
        request.match_info["room_id"],
        request.match_info["event_type"],
        _state_key(request),
    )
    return json_response(content)


async def put_state_event(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    content = await read_json_object(request)
    event_id = await request.app[ROOM_EVENTS].send_state(
        requester.user_id,
        request.match_info["room_id"],
        request.match_info["event_type"],
        _state_key(request),
        content,
    )
    return json_response({"event_id": event_id})


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "GET", "/rooms/{room_id}/state", get_state)
    # State keys may be empty or hold '/', so the last part takes the rest of the path.
    for path in (
        "/rooms/{room_id}/state/{event_type}",
        "/rooms/{room_id}/state/{event_type}/{state_key:.*}",
    ):
        add_client_route(router, "GET", path, get_state_event)
        add_client_route(router, "PUT", path, put_state_event)
