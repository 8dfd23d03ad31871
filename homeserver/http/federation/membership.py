"""Joins, leaves, knocks and invites over federation (all under ``/_matrix/federation``):
``v1/make_join``, ``v2/send_join``, ``v1/make_leave``, ``v2/send_leave``, ``v1/make_knock``,
``v1/send_knock``, ``v2/invite`` and the v1 ``invite`` of old rooms."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.errors import BadRequest, Codes
from homeserver.http.appkeys import INBOUND_INVITES, RESIDENT_MEMBERSHIP
from homeserver.http.federation.auth import authenticate_request
from homeserver.http.json_body import json_response, read_json, read_json_object

V1 = "/_matrix/federation/v1"
V2 = "/_matrix/federation/v2"


def _check_omit_members(request: web.Request) -> None:
    """``omit_members`` must be a boolean; we always answer with the full state (allowed)."""
    value = request.query.get("omit_members", "false")
    if value not in ("true", "false"):
        raise BadRequest("'omit_members' must be true or false", Codes.INVALID_PARAM)


async def make_join(request: web.Request) -> web.Response:
    origin = await authenticate_request(request)
    versions = request.query.getall("ver", []) or ["1"]
    body = await request.app[RESIDENT_MEMBERSHIP].make_membership(
        origin, request.match_info["room_id"], request.match_info["user_id"], "join", versions
    )
    return json_response(body)


async def make_leave(request: web.Request) -> web.Response:
    origin = await authenticate_request(request)
    body = await request.app[RESIDENT_MEMBERSHIP].make_membership(
        origin, request.match_info["room_id"], request.match_info["user_id"], "leave"
    )
    return json_response(body)


async def make_knock(request: web.Request) -> web.Response:
    origin = await authenticate_request(request)
    versions = request.query.getall("ver", [])
    if not versions:  # required for knocks (spec), unlike make_join
        raise BadRequest("'ver' is required", Codes.MISSING_PARAM)
    body = await request.app[RESIDENT_MEMBERSHIP].make_membership(
        origin, request.match_info["room_id"], request.match_info["user_id"], "knock", versions
    )
    return json_response(body)


async def send_knock(request: web.Request) -> web.Response:
    origin = await authenticate_request(request)
    pdu = await read_json(request)
    body = await request.app[RESIDENT_MEMBERSHIP].send_knock(
        origin, request.match_info["room_id"], request.match_info["event_id"], pdu
    )
    return json_response(body)


async def send_join(request: web.Request) -> web.Response:
    origin = await authenticate_request(request)
    _check_omit_members(request)
    pdu = await read_json(request)
    body = await request.app[RESIDENT_MEMBERSHIP].send_join(
        origin, request.match_info["room_id"], request.match_info["event_id"], pdu
    )
    return json_response(body)


async def send_leave(request: web.Request) -> web.Response:
    origin = await authenticate_request(request)
    pdu = await read_json(request)
    await request.app[RESIDENT_MEMBERSHIP].send_leave(
        origin, request.match_info["room_id"], request.match_info["event_id"], pdu
    )
    return json_response({})


async def invite_v2(request: web.Request) -> web.Response:
    origin = await authenticate_request(request)
    body = await read_json_object(request)
    if "event" not in body or "room_version" not in body:
        raise BadRequest("'event' and 'room_version' are required", Codes.MISSING_PARAM)
    event = await request.app[INBOUND_INVITES].on_invite(
        origin,
        request.match_info["room_id"],
        request.match_info["event_id"],
        body["room_version"],
        body["event"],
        body.get("invite_room_state"),
    )
    return json_response({"event": event})


async def invite_v1(request: web.Request) -> web.Response:
    """v1: the body is the event itself, the room state in its ``unsigned``; rooms v1/v2 only
    ever use it, so the version is "1" unless the room is known."""
    origin = await authenticate_request(request)
    pdu = await read_json_object(request)
    unsigned: Any = pdu.get("unsigned")
    state = unsigned.get("invite_room_state") if isinstance(unsigned, dict) else None
    event = await request.app[INBOUND_INVITES].on_invite_v1(
        origin, request.match_info["room_id"], request.match_info["event_id"], pdu, state
    )
    return json_response([200, {"event": event}])


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_route("GET", V1 + "/make_join/{room_id}/{user_id}", make_join)
    router.add_route("PUT", V2 + "/send_join/{room_id}/{event_id}", send_join)
    router.add_route("GET", V1 + "/make_leave/{room_id}/{user_id}", make_leave)
    router.add_route("PUT", V2 + "/send_leave/{room_id}/{event_id}", send_leave)
    router.add_route("GET", V1 + "/make_knock/{room_id}/{user_id}", make_knock)
    router.add_route("PUT", V1 + "/send_knock/{room_id}/{event_id}", send_knock)
    router.add_route("PUT", V2 + "/invite/{room_id}/{event_id}", invite_v2)
    router.add_route("PUT", V1 + "/invite/{room_id}/{event_id}", invite_v1)
