"""``GET``/``POST /_matrix/federation/v1/publicRooms``: this server's room directory for other
servers, the same listing clients get. Refused with 403 unless
``allow_public_rooms_over_federation`` (Synapse's default: off), after the request's signature
has been checked."""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import BadRequest, Codes, Forbidden
from homeserver.http.appkeys import CONFIG, ROOM_DIRECTORY
from homeserver.http.federation.auth import authenticate_request
from homeserver.http.json_body import json_response, read_json_object
from homeserver.rooms.directory import PublicRoomsQuery, parse_filter, parse_limit

PATH = "/_matrix/federation/v1/publicRooms"


async def _allowed(request: web.Request) -> None:
    origin = await authenticate_request(request)
    if not request.app[CONFIG].rooms.allow_public_rooms_over_federation:
        raise Forbidden(f"Federation denied with {origin}.")


def _no_limit_if_zero(limit: int | None) -> int | None:
    # Zero means "no limit" over federation (Synapse); the listing's own cap still applies.
    return None if limit == 0 else limit


async def get_public_rooms(request: web.Request) -> web.Response:
    await _allowed(request)
    query = PublicRoomsQuery(
        limit=_no_limit_if_zero(parse_limit(request.query.get("limit"), from_query=True)),
        since=request.query.get("since"),
    )
    return json_response(await request.app[ROOM_DIRECTORY].get_public_rooms(query))


async def post_public_rooms(request: web.Request) -> web.Response:
    await _allowed(request)
    body = await read_json_object(request)
    since = body.get("since")
    if since is not None and not isinstance(since, str):
        raise BadRequest("since must be a string", Codes.BAD_JSON)
    search_term, room_types = parse_filter(body.get("filter"))
    query = PublicRoomsQuery(
        limit=_no_limit_if_zero(parse_limit(body.get("limit"))),
        since=since,
        search_term=search_term,
        room_types=room_types,
    )
    return json_response(await request.app[ROOM_DIRECTORY].get_public_rooms(query))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(PATH, get_public_rooms)
    router.add_post(PATH, post_public_rooms)
