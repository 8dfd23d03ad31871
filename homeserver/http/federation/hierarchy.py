"""``GET /_matrix/federation/v1/hierarchy/{roomId}``: a space and its direct children, as far
as the asking server may see them (:mod:`homeserver.rooms.hierarchy`)."""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import BadRequest, Codes
from homeserver.http.appkeys import HIERARCHY
from homeserver.http.federation.auth import authenticate_request
from homeserver.http.json_body import json_response


async def hierarchy(request: web.Request) -> web.Response:
    origin = await authenticate_request(request)
    suggested = request.query.get("suggested_only", "false")
    if suggested not in ("true", "false"):
        raise BadRequest("suggested_only must be 'true' or 'false'", Codes.INVALID_PARAM)
    body = await request.app[HIERARCHY].get_federation_hierarchy(
        origin, request.match_info["room_id"], suggested_only=suggested == "true"
    )
    return json_response(body)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/_matrix/federation/v1/hierarchy/{room_id}", hierarchy)
