"""Federation queries: ``v1/query/directory``, ``v1/query/profile`` (any other query type is
404 ``M_UNRECOGNIZED``), and end-to-end keys: ``v1/user/devices/{userId}``,
``v1/user/keys/query`` and ``v1/user/keys/claim``."""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import Codes, NotFound
from homeserver.http.appkeys import FEDERATION_QUERIES
from homeserver.http.federation.auth import authenticate_request
from homeserver.http.json_body import json_response, read_json_object

V1 = "/_matrix/federation/v1"


async def query_directory(request: web.Request) -> web.Response:
    await authenticate_request(request)
    body = await request.app[FEDERATION_QUERIES].directory(request.query.get("room_alias"))
    return json_response(body)


async def query_profile(request: web.Request) -> web.Response:
    await authenticate_request(request)
    body = await request.app[FEDERATION_QUERIES].profile(
        request.query.get("user_id"), request.query.get("field")
    )
    return json_response(body)


async def query_unknown(request: web.Request) -> web.Response:
    await authenticate_request(request)
    raise NotFound("Unknown query type", Codes.UNRECOGNIZED)


async def user_devices(request: web.Request) -> web.Response:
    await authenticate_request(request)
    body = await request.app[FEDERATION_QUERIES].e2e.user_devices(request.match_info["user_id"])
    return json_response(body)


async def user_keys_query(request: web.Request) -> web.Response:
    await authenticate_request(request)
    body = await read_json_object(request)
    return json_response(await request.app[FEDERATION_QUERIES].e2e.query_keys(body))


async def user_keys_claim(request: web.Request) -> web.Response:
    await authenticate_request(request)
    body = await read_json_object(request)
    return json_response(await request.app[FEDERATION_QUERIES].e2e.claim_keys(body))


def add_routes(router: web.UrlDispatcher) -> None:
    # The named query types first: aiohttp tries routes in the order they were added.
    router.add_route("GET", V1 + "/query/directory", query_directory)
    router.add_route("GET", V1 + "/query/profile", query_profile)
    router.add_route("GET", V1 + "/query/{query_type}", query_unknown)
    router.add_route("GET", V1 + "/user/devices/{user_id}", user_devices)
    router.add_route("POST", V1 + "/user/keys/query", user_keys_query)
    router.add_route("POST", V1 + "/user/keys/claim", user_keys_claim)
