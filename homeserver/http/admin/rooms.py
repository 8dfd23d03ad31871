"""Synapse's room admin API, reads and deletion (``synapse/rest/admin/rooms.py``):

* ``GET /_synapse/admin/v1/rooms`` — list (``from``, ``limit``, ``order_by``, ``dir``,
  ``search_term``, ``public_rooms``, ``empty_rooms``);
* ``GET /_synapse/admin/v1/rooms/{roomId}`` — details; ``…/members``; ``…/state[?type=]``;
* ``DELETE /_synapse/admin/v2/rooms/{roomId}`` — shut down and purge in the background;
* ``GET /_synapse/admin/v2/rooms/{roomId}/delete_status`` and
  ``GET /_synapse/admin/v2/rooms/delete_status/{deleteId}``.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.admin.room_deletion import parse_deletion_body
from homeserver.admin.rooms import ROOM_ORDERS, RoomListQuery, check_room_id
from homeserver.errors import BadRequest, Codes
from homeserver.http.admin.auth import require_admin
from homeserver.http.admin.params import backwards, bool_param, paging, string_param
from homeserver.http.appkeys import ADMIN_ROOMS, ROOM_DELETION
from homeserver.http.json_body import json_response, read_json_object

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"


async def list_rooms(request: web.Request) -> web.Response:
    await require_admin(request)
    start, limit = paging(request)
    search_term = string_param(request, "search_term")
    if search_term == "":
        raise BadRequest("search_term cannot be an empty string", Codes.INVALID_PARAM)
    query = RoomListQuery(
        start=start,
        limit=limit,
        order_by=string_param(request, "order_by", "name", allowed=tuple(ROOM_ORDERS)) or "name",
        backwards=backwards(request),
        search_term=search_term,
        public_rooms=bool_param(request, "public_rooms"),
        empty_rooms=bool_param(request, "empty_rooms"),
    )
    return json_response(await request.app[ADMIN_ROOMS].list_rooms(query))


async def room_details(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await request.app[ADMIN_ROOMS].get_room(request.match_info["room_id"]))


async def room_members(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await request.app[ADMIN_ROOMS].members(request.match_info["room_id"]))


async def room_state(request: web.Request) -> web.Response:
    await require_admin(request)
    event_type = string_param(request, "type") or None
    body = await request.app[ADMIN_ROOMS].state(request.match_info["room_id"], event_type)
    return json_response(body)


async def delete_room(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    room_id = request.match_info["room_id"]
    params = parse_deletion_body(await read_json_object(request), requester.user_id)
    check_room_id(room_id)
    delete_id = await request.app[ROOM_DELETION].start(room_id, params)
    return json_response({"delete_id": delete_id})


async def delete_status_by_room(request: web.Request) -> web.Response:
    await require_admin(request)
    room_id = request.match_info["room_id"]
    check_room_id(room_id)
    return json_response(await request.app[ROOM_DELETION].status_for_room(room_id))


async def delete_status_by_id(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(
        await request.app[ROOM_DELETION].status(request.match_info["delete_id"])
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(f"{V1}/rooms", list_rooms)
    router.add_get(f"{V1}/rooms/{{room_id}}", room_details)
    router.add_get(f"{V1}/rooms/{{room_id}}/members", room_members)
    router.add_get(f"{V1}/rooms/{{room_id}}/state", room_state)
    # The fixed path first: "delete_status" is not a room ID.
    router.add_get(f"{V2}/rooms/delete_status/{{delete_id}}", delete_status_by_id)
    router.add_get(f"{V2}/rooms/{{room_id}}/delete_status", delete_status_by_room)
    router.add_delete(f"{V2}/rooms/{{room_id}}", delete_room)
