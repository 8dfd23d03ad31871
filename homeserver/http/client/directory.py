"""Room aliases and the room directory:

* ``PUT/GET/DELETE /directory/room/{roomAlias}``
* ``GET /rooms/{roomId}/aliases``
* ``GET/PUT /directory/list/room/{roomId}``
* ``GET/POST /publicRooms``

Path parts arrive percent-decoded from aiohttp; the services validate them.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import BadRequest, Codes
from homeserver.http.appkeys import ALIASES, CONFIG, ROOM_DIRECTORY
from homeserver.http.auth import Requester, get_optional_requester, get_requester
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route
from homeserver.rooms.aliases import Caller
from homeserver.rooms.directory import PublicRoomsQuery, parse_filter, parse_limit


def _caller(requester: Requester) -> Caller:
    return Caller(requester.user_id, requester.is_admin)


async def put_alias(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await read_json_object(request)
    await request.app[ALIASES].create_alias(
        _caller(requester), request.match_info["room_alias"], body.get("room_id")
    )
    return json_response({})


async def get_alias(request: web.Request) -> web.Response:
    await get_optional_requester(request)  # a token, when given, must be valid
    result = await request.app[ALIASES].resolve(request.match_info["room_alias"])
    return json_response(result)


async def delete_alias(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    await request.app[ALIASES].delete_alias(_caller(requester), request.match_info["room_alias"])
    return json_response({})


async def get_room_aliases(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    aliases = await request.app[ALIASES].get_room_aliases(
        _caller(requester), request.match_info["room_id"]
    )
    return json_response({"aliases": aliases})


async def get_visibility(request: web.Request) -> web.Response:
    visibility = await request.app[ALIASES].get_visibility(request.match_info["room_id"])
    return json_response({"visibility": visibility})


async def put_visibility(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await read_json_object(request)
    # Synapse's default when the key is missing.
    await request.app[ALIASES].set_visibility(
        _caller(requester), request.match_info["room_id"], body.get("visibility", "public")
    )
    return json_response({})


async def _directory_reader(request: web.Request) -> None:
    """A token is needed unless ``allow_public_rooms_without_auth`` (as Synapse); when one is
    given it must be valid either way."""
    if request.app[CONFIG].rooms.allow_public_rooms_without_auth:
        await get_optional_requester(request)
    else:
        await get_requester(request)


def _check_server(request: web.Request, server: object) -> None:
    if server is not None and server != request.app[CONFIG].server_name:
        raise BadRequest(
            "Listing another server's room directory is not supported", Codes.INVALID_PARAM
        )


async def get_public_rooms(request: web.Request) -> web.Response:
    await _directory_reader(request)
    _check_server(request, request.query.get("server"))
    query = PublicRoomsQuery(
        limit=parse_limit(request.query.get("limit"), from_query=True),
        since=request.query.get("since"),
    )
    return json_response(await request.app[ROOM_DIRECTORY].get_public_rooms(query))


async def post_public_rooms(request: web.Request) -> web.Response:
    await _directory_reader(request)
    body = await read_json_object(request)
    _check_server(request, request.query.get("server"))
    since = body.get("since")
    if since is not None and not isinstance(since, str):
        raise BadRequest("since must be a string", Codes.BAD_JSON)
    search_term, room_types = parse_filter(body.get("filter"))
    query = PublicRoomsQuery(
        limit=parse_limit(body.get("limit")),
        since=since,
        search_term=search_term,
        room_types=room_types,
    )
    return json_response(await request.app[ROOM_DIRECTORY].get_public_rooms(query))


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "PUT", "/directory/room/{room_alias}", put_alias)
    add_client_route(router, "GET", "/directory/room/{room_alias}", get_alias)
    add_client_route(router, "DELETE", "/directory/room/{room_alias}", delete_alias)
    add_client_route(router, "GET", "/rooms/{room_id}/aliases", get_room_aliases)
    add_client_route(router, "GET", "/directory/list/room/{room_id}", get_visibility)
    add_client_route(router, "PUT", "/directory/list/room/{room_id}", put_visibility)
    add_client_route(router, "GET", "/publicRooms", get_public_rooms)
    add_client_route(router, "POST", "/publicRooms", post_public_rooms)
