"""Reading a room: ``/messages``, ``/context/{eventId}``, ``/event/{eventId}``, ``/members``,
``/joined_members``."""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import BadRequest, Codes
from homeserver.http.appkeys import ROOM_EVENTS
from homeserver.http.auth import get_requester
from homeserver.http.client.room_params import query_int
from homeserver.http.json_body import json_response
from homeserver.http.routes import add_client_route
from homeserver.rooms.event_filter import parse_room_event_filter
from homeserver.rooms.room_reads import DEFAULT_LIMIT, MAX_LIMIT
from homeserver.streams.tokens import StreamToken


def _token(request: web.Request, name: str) -> StreamToken | None:
    text = request.query.get(name)
    return None if not text else StreamToken.parse(text, param=name)


async def messages(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    direction = request.query.get("dir", "b")
    if direction not in ("b", "f"):
        raise BadRequest("'dir' must be 'b' or 'f'", Codes.INVALID_PARAM)
    body = await request.app[ROOM_EVENTS].reader.messages(
        requester.user_id,
        request.match_info["room_id"],
        backwards=direction == "b",
        from_token=_token(request, "from"),
        to_token=_token(request, "to"),
        limit=query_int(request, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT),
        event_filter=parse_room_event_filter(request.query.get("filter")),
    )
    return json_response(body)


async def context(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await request.app[ROOM_EVENTS].reader.context(
        requester.user_id,
        request.match_info["room_id"],
        request.match_info["event_id"],
        limit=query_int(request, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT),
        event_filter=parse_room_event_filter(request.query.get("filter")),
    )
    return json_response(body)


async def get_event(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await request.app[ROOM_EVENTS].reader.get_event(
        requester.user_id, request.match_info["room_id"], request.match_info["event_id"]
    )
    return json_response(body)


async def members(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await request.app[ROOM_EVENTS].reader.members(
        requester.user_id,
        request.match_info["room_id"],
        at=_token(request, "at"),
        membership=request.query.get("membership") or None,
        not_membership=request.query.get("not_membership") or None,
    )
    return json_response(body)


async def joined_members(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await request.app[ROOM_EVENTS].reader.joined_members(
        requester.user_id, request.match_info["room_id"]
    )
    return json_response(body)


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "GET", "/rooms/{room_id}/messages", messages)
    add_client_route(router, "GET", "/rooms/{room_id}/context/{event_id}", context)
    add_client_route(router, "GET", "/rooms/{room_id}/event/{event_id}", get_event)
    add_client_route(router, "GET", "/rooms/{room_id}/members", members)
    add_client_route(router, "GET", "/rooms/{room_id}/joined_members", joined_members)
