"""``GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event?ts=&dir=`` (spec v1.6, MSC3030):
the event nearest ``ts`` the user may see (see rooms/timestamp_lookup.py)."""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import BadRequest, Codes
from homeserver.http.appkeys import TIMESTAMP_LOOKUP
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response

PATHS = (
    "/_matrix/client/v1/rooms/{room_id}/timestamp_to_event",
    "/_matrix/client/unstable/org.matrix.msc3030/rooms/{room_id}/timestamp_to_event",
)


#: the largest timestamp accepted (ms; far beyond any event's).
MAX_TS = 2**62


def timestamp_query(request: web.Request) -> tuple[int, bool]:
    """``ts`` (required, ms) and ``dir`` (``f`` default, or ``b``) → (ts, forwards)."""
    text = request.query.get("ts")
    if text is None:
        raise BadRequest("Missing integer query parameter 'ts'", Codes.MISSING_PARAM)
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise BadRequest("Query parameter 'ts' must be an integer", Codes.INVALID_PARAM)
    direction = request.query.get("dir", "f")
    if direction not in ("f", "b"):
        raise BadRequest("Query parameter 'dir' must be one of ['f', 'b']", Codes.INVALID_PARAM)
    return min(int(text), MAX_TS), direction == "f"


async def timestamp_to_event(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    ts, forwards = timestamp_query(request)
    answer = await request.app[TIMESTAMP_LOOKUP].find(
        request.match_info["room_id"], ts, forwards=forwards, user_id=requester.user_id
    )
    return json_response(answer)


def add_routes(router: web.UrlDispatcher) -> None:
    for path in PATHS:
        router.add_get(path, timestamp_to_event)
