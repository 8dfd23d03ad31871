"""Membership endpoints: join and knock (by ID or alias), leave, invite, kick, ban, unban,
forget."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from homeserver.errors import BadRequest, Codes
from homeserver.http.appkeys import CLOCK, MEMBERSHIP
from homeserver.http.auth import get_requester
from homeserver.http.client.room_params import optional_reason, required_user_id
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route
from homeserver.types import is_valid_server_name


def _servers(request: web.Request) -> list[str]:
    """Servers to go through when we are not in the room: ``via`` (v1.12) and the older
    ``server_name``, both repeatable."""
    servers = [*request.query.getall("via", []), *request.query.getall("server_name", [])]
    return [s for s in servers if is_valid_server_name(s)]


async def join_by_id_or_alias(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await read_json_object(request)
    room_id = await request.app[MEMBERSHIP].join(
        requester.user_id,
        request.match_info["room"],
        reason=optional_reason(body),
        servers=_servers(request),
    )
    return json_response({"room_id": room_id})


async def knock(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await read_json_object(request)
    room_id = await request.app[MEMBERSHIP].knock(
        requester.user_id,
        request.match_info["room"],
        reason=optional_reason(body),
        servers=_servers(request),
    )
    return json_response({"room_id": room_id})


async def leave(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await read_json_object(request)
    await request.app[MEMBERSHIP].leave(
        requester.user_id, request.match_info["room_id"], reason=optional_reason(body)
    )
    return json_response({})


async def invite(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await read_json_object(request)
    if "user_id" not in body and {"id_server", "medium", "address"} <= body.keys():
        raise BadRequest("Third-party invites are not supported", Codes.UNRECOGNIZED)
    is_direct = body.get("is_direct", False)
    if not isinstance(is_direct, bool):
        raise BadRequest("'is_direct' must be a boolean", Codes.BAD_JSON)
    await request.app[MEMBERSHIP].invite(
        requester.user_id,
        request.match_info["room_id"],
        required_user_id(body),
        reason=optional_reason(body),
        is_direct=is_direct,
    )
    return json_response({})


def _moderation(action: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        requester = await get_requester(request)
        body = await read_json_object(request)
        method = getattr(request.app[MEMBERSHIP], action)
        await method(
            requester.user_id,
            request.match_info["room_id"],
            required_user_id(body),
            reason=optional_reason(body),
        )
        return json_response({})

    return handler


async def forget(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    await read_json_object(request)
    clock = request.app[CLOCK]
    membership = request.app[MEMBERSHIP]
    await membership.forget(requester.user_id, request.match_info["room_id"], clock())
    return json_response({})


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "POST", "/join/{room}", join_by_id_or_alias)
    add_client_route(router, "POST", "/rooms/{room}/join", join_by_id_or_alias)
    add_client_route(router, "POST", "/knock/{room}", knock)
    add_client_route(router, "POST", "/rooms/{room_id}/leave", leave)
    add_client_route(router, "POST", "/rooms/{room_id}/invite", invite)
    for action in ("kick", "ban", "unban"):
        add_client_route(router, "POST", f"/rooms/{{room_id}}/{action}", _moderation(action))
    add_client_route(router, "POST", "/rooms/{room_id}/forget", forget)
