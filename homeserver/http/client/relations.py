"""``/_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]`` and
``/_matrix/client/v1/rooms/{roomId}/threads``."""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import BadRequest, Codes
from homeserver.http.appkeys import ROOM_EVENTS
from homeserver.http.auth import get_requester
from homeserver.http.client.room_params import query_int
from homeserver.http.json_body import json_response
from homeserver.rooms.relations import DEFAULT_LIMIT, MAX_LIMIT
from homeserver.streams.tokens import StreamToken

V1_ROOMS = "/_matrix/client/v1/rooms/{room_id}"


def _token(request: web.Request, name: str) -> StreamToken | None:
    text = request.query.get(name)
    return None if not text else StreamToken.parse(text, param=name)


def _boolean(request: web.Request, name: str) -> bool:
    text = request.query.get(name, "false")
    if text not in ("true", "false"):
        raise BadRequest(f"'{name}' must be 'true' or 'false'", Codes.INVALID_PARAM)
    return text == "true"


async def relations(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    direction = request.query.get("dir", "b")
    if direction not in ("b", "f"):
        raise BadRequest("'dir' must be 'b' or 'f'", Codes.INVALID_PARAM)
    match = request.match_info
    body = await request.app[ROOM_EVENTS].relations.relations(
        requester.user_id,
        match["room_id"],
        match["event_id"],
        rel_type=match.get("rel_type"),
        event_type=match.get("event_type"),
        from_token=_token(request, "from"),
        to_token=_token(request, "to"),
        limit=query_int(request, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT),
        backwards=direction == "b",
        recurse=_boolean(request, "recurse"),
    )
    return json_response(body)


async def threads(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await request.app[ROOM_EVENTS].relations.threads(
        requester.user_id,
        request.match_info["room_id"],
        include=request.query.get("include", "all"),
        from_token=_token(request, "from"),
        limit=query_int(request, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT),
    )
    return json_response(body)


def add_routes(router: web.UrlDispatcher) -> None:
    relations_path = V1_ROOMS + "/relations/{event_id}"
    router.add_get(relations_path, relations)
    router.add_get(relations_path + "/{rel_type}", relations)
    router.add_get(relations_path + "/{rel_type}/{event_type}", relations)
    router.add_get(V1_ROOMS + "/threads", threads)
