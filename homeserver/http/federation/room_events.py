"""Serving a room's events and state to other servers: ``/state``, ``/state_ids``, ``/event``,
``/event_auth``, ``/backfill``, ``/get_missing_events`` (all under ``/_matrix/federation/v1``)."""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import BadRequest, Codes
from homeserver.federation.serving import parse_limit
from homeserver.http.appkeys import FEDERATION_EVENTS
from homeserver.http.federation.auth import authenticate_request
from homeserver.http.json_body import json_response, read_json_object

PREFIX = "/_matrix/federation/v1"


def _event_id_param(request: web.Request) -> str:
    event_id = request.query.get("event_id")
    if not event_id:
        raise BadRequest("Missing 'event_id' query parameter", Codes.MISSING_PARAM)
    return event_id


async def get_state(request: web.Request) -> web.Response:
    origin = await authenticate_request(request)
    body = await request.app[FEDERATION_EVENTS].state(
        origin, request.match_info["room_id"], _event_id_param(request)
    )
    return json_response(body)


async def get_state_ids(request: web.Request) -> web.Response:
    origin = await authenticate_request(request)
    state_ids, chain_ids = await request.app[FEDERATION_EVENTS].state_ids(
        origin, request.match_info["room_id"], _event_id_param(request)
    )
    return json_response({"pdu_ids": state_ids, "auth_chain_ids": chain_ids})


async def get_event(request: web.Request) -> web.Response:
    origin = await authenticate_request(request)
    body = await request.app[FEDERATION_EVENTS].event(origin, request.match_info["event_id"])
    return json_response(body)


async def get_event_auth(request: web.Request) -> web.Response:
    origin = await authenticate_request(request)
    body = await request.app[FEDERATION_EVENTS].event_auth(
        origin, request.match_info["room_id"], request.match_info["event_id"]
    )
    return json_response(body)


async def get_backfill(request: web.Request) -> web.Response:
    origin = await authenticate_request(request)
    from_ids = request.query.getall("v", [])
    if not from_ids:
        raise BadRequest("Missing 'v' query parameter", Codes.MISSING_PARAM)
    if "limit" not in request.query:
        raise BadRequest("Missing 'limit' query parameter", Codes.MISSING_PARAM)
    limit = parse_limit(request.query["limit"], 10)
    body = await request.app[FEDERATION_EVENTS].backfill(
        origin, request.match_info["room_id"], from_ids, limit
    )
    return json_response(body)


def _id_list(body: dict, key: str, *, required: bool) -> list[str]:
    value = body.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"'{key}' must be a list of event IDs", Codes.BAD_JSON)
    return value


async def post_get_missing_events(request: web.Request) -> web.Response:
    origin = await authenticate_request(request)
    body = await read_json_object(request)
    min_depth = body.get("min_depth", 0)
    if isinstance(min_depth, bool) or not isinstance(min_depth, int):
        raise BadRequest("'min_depth' must be an integer", Codes.BAD_JSON)
    answer = await request.app[FEDERATION_EVENTS].get_missing_events(
        origin,
        request.match_info["room_id"],
        _id_list(body, "earliest_events", required=True),
        _id_list(body, "latest_events", required=True),
        parse_limit(body.get("limit"), 10),
        min_depth,
    )
    return json_response(answer)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_route("GET", PREFIX + "/state/{room_id}", get_state)
    router.add_route("GET", PREFIX + "/state_ids/{room_id}", get_state_ids)
    router.add_route("GET", PREFIX + "/event/{event_id}", get_event)
    router.add_route("GET", PREFIX + "/event_auth/{room_id}/{event_id}", get_event_auth)
    router.add_route("GET", PREFIX + "/backfill/{room_id}", get_backfill)
    router.add_route("POST", PREFIX + "/get_missing_events/{room_id}", post_get_missing_events)
