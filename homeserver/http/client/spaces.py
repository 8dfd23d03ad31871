"""Spaces and room previews:

* ``GET /_matrix/client/v1/rooms/{roomId}/hierarchy`` (also under MSC2946's unstable prefix)
* ``GET /_matrix/client/v1/room_summary/{roomIdOrAlias}`` (MSC3266) and the unstable paths
  clients still call: ``/_matrix/client/unstable/im.nheko.summary/summary/{roomIdOrAlias}`` and
  ``…/im.nheko.summary/rooms/{roomIdOrAlias}/summary``. A token is optional here.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import BadRequest, Codes
from homeserver.http.appkeys import HIERARCHY, ROOM_SUMMARY
from homeserver.http.auth import get_optional_requester, get_requester
from homeserver.http.json_body import json_response
from homeserver.rooms.hierarchy import HierarchyQuery

V1 = "/_matrix/client/v1"
NHEKO = "/_matrix/client/unstable/im.nheko.summary"
MSC2946 = "/_matrix/client/unstable/org.matrix.msc2946"


def _optional_int(request: web.Request, name: str) -> int | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"{name} must be an integer", Codes.INVALID_PARAM) from None


def _bool(request: web.Request, name: str) -> bool:
    text = request.query.get(name, "false")
    if text not in ("true", "false"):
        raise BadRequest(f"{name} must be 'true' or 'false'", Codes.INVALID_PARAM)
    return text == "true"


async def hierarchy(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    query = HierarchyQuery(
        room_id=request.match_info["room_id"],
        suggested_only=_bool(request, "suggested_only"),
        max_depth=_optional_int(request, "max_depth"),
        limit=_optional_int(request, "limit"),
        from_token=request.query.get("from"),
    )
    return json_response(await request.app[HIERARCHY].get_hierarchy(requester.user_id, query))


async def room_summary(request: web.Request) -> web.Response:
    requester = await get_optional_requester(request)
    via = request.query.getall("via", [])
    body = await request.app[ROOM_SUMMARY].get_summary(
        None if requester is None else requester.user_id, request.match_info["room"], via
    )
    return json_response(body)


def add_routes(router: web.UrlDispatcher) -> None:
    for prefix in (V1, MSC2946):
        router.add_get(prefix + "/rooms/{room_id}/hierarchy", hierarchy)
    router.add_get(V1 + "/room_summary/{room}", room_summary)
    router.add_get(NHEKO + "/summary/{room}", room_summary)
    router.add_get(NHEKO + "/rooms/{room}/summary", room_summary)
