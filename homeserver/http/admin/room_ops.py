"""Synapse's admin room tools (``synapse/rest/admin/rooms.py``, ``statistics.py``,
``events.py``):

* ``GET/DELETE /_synapse/admin/v1/rooms/{roomIdOrAlias}/forward_extremities`` —
  ``{"count", "results": [{event_id, state_group, depth, received_ts}]}`` / ``{"deleted"}``;
* ``GET/PUT /_synapse/admin/v1/rooms/{roomId}/block`` — ``{"block", "user_id"?}``;
* ``POST /_synapse/admin/v1/join/{roomIdOrAlias}`` ``{"user_id"}`` — ``{"room_id"}``;
* ``POST /_synapse/admin/v1/rooms/{roomIdOrAlias}/make_room_admin`` ``{"user_id"?}`` — ``{}``;
* ``GET /_synapse/admin/v1/rooms/{roomId}/messages`` and ``…/context/{eventId}`` — as the
  client API, every event whatever the admin's membership;
* ``GET /_synapse/admin/v1/rooms/{roomId}/timestamp_to_event?ts=&dir=`` —
  ``{"event_id", "origin_server_ts"}``;
* ``GET /_synapse/admin/v1/fetch_event/{eventId}`` — ``{"event"}``;
* ``GET /_synapse/admin/v1/statistics/database/rooms`` — ``{"rooms": [{room_id,
  estimated_size}]}``.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.http.admin.auth import require_admin
from homeserver.http.admin.params import int_param, string_param
from homeserver.http.appkeys import ADMIN_ROOM_OPS, ROOM_EVENTS, TIMESTAMP_LOOKUP
from homeserver.http.client.timestamp_to_event import timestamp_query
from homeserver.http.json_body import json_response, read_json_object
from homeserver.rooms.event_filter import parse_room_event_filter
from homeserver.rooms.room_reads import DEFAULT_LIMIT, MAX_LIMIT
from homeserver.streams.tokens import StreamToken

V1 = "/_synapse/admin/v1"


def _token(request: web.Request, name: str) -> StreamToken | None:
    text = string_param(request, name)
    return None if not text else StreamToken.parse(text, param=name)


async def get_extremities(request: web.Request) -> web.Response:
    await require_admin(request)
    ops = request.app[ADMIN_ROOM_OPS]
    return json_response(await ops.forward_extremities(request.match_info["room_id"]))


async def delete_extremities(request: web.Request) -> web.Response:
    await require_admin(request)
    ops = request.app[ADMIN_ROOM_OPS]
    return json_response(await ops.delete_forward_extremities(request.match_info["room_id"]))


async def get_block(request: web.Request) -> web.Response:
    await require_admin(request)
    ops = request.app[ADMIN_ROOM_OPS]
    return json_response(await ops.block_status(request.match_info["room_id"]))


async def put_block(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    body = await read_json_object(request)
    ops = request.app[ADMIN_ROOM_OPS]
    answer = await ops.set_block(request.match_info["room_id"], body, requester.user_id)
    return json_response(answer)


async def join_user(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    body = await read_json_object(request)
    ops = request.app[ADMIN_ROOM_OPS]
    answer = await ops.join_user(requester.user_id, request.match_info["room_id"], body)
    return json_response(answer)


async def make_room_admin(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    body = await read_json_object(request) if request.can_read_body else {}
    ops = request.app[ADMIN_ROOM_OPS]
    answer = await ops.make_room_admin(requester.user_id, request.match_info["room_id"], body)
    return json_response(answer)


async def messages(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    direction = string_param(request, "dir", "b", allowed=("b", "f"))
    body = await request.app[ROOM_EVENTS].reader.messages(
        requester.user_id,
        request.match_info["room_id"],
        backwards=direction == "b",
        from_token=_token(request, "from"),
        to_token=_token(request, "to"),
        limit=int_param(request, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT),
        event_filter=parse_room_event_filter(request.query.get("filter")),
        as_admin=True,
    )
    return json_response(body)


async def context(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    body = await request.app[ROOM_EVENTS].reader.context(
        requester.user_id,
        request.match_info["room_id"],
        request.match_info["event_id"],
        limit=int_param(request, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT),
        event_filter=parse_room_event_filter(request.query.get("filter")),
        as_admin=True,
    )
    return json_response(body)


async def timestamp_to_event(request: web.Request) -> web.Response:
    await require_admin(request)
    ts, forwards = timestamp_query(request)
    answer = await request.app[TIMESTAMP_LOOKUP].find(
        request.match_info["room_id"], ts, forwards=forwards, user_id=None
    )
    return json_response(answer)


async def fetch_event(request: web.Request) -> web.Response:
    await require_admin(request)
    ops = request.app[ADMIN_ROOM_OPS]
    return json_response(await ops.fetch_event(request.match_info["event_id"]))


async def database_rooms(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await request.app[ADMIN_ROOM_OPS].database_room_sizes())


def add_routes(router: web.UrlDispatcher) -> None:
    room = f"{V1}/rooms/{{room_id}}"
    router.add_get(f"{room}/forward_extremities", get_extremities)
    router.add_delete(f"{room}/forward_extremities", delete_extremities)
    router.add_get(f"{room}/block", get_block)
    router.add_put(f"{room}/block", put_block)
    router.add_post(f"{V1}/join/{{room_id}}", join_user)
    router.add_post(f"{room}/make_room_admin", make_room_admin)
    router.add_get(f"{room}/messages", messages)
    router.add_get(f"{room}/context/{{event_id}}", context)
    router.add_get(f"{room}/timestamp_to_event", timestamp_to_event)
    router.add_get(f"{V1}/fetch_event/{{event_id}}", fetch_event)
    router.add_get(f"{V1}/statistics/database/rooms", database_rooms)
