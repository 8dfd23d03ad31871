"""``/keys/upload``, ``/keys/query``, ``/keys/claim``, ``/keys/changes``,
``/keys/device_signing/upload`` and ``/keys/signatures/upload``."""

from __future__ import annotations

from aiohttp import web

from homeserver.e2e.key_requests import parse_claim, parse_query, parse_timeout_ms
from homeserver.errors import BadRequest, Codes
from homeserver.http.appkeys import E2E_KEYS
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response, read_json, read_json_object
from homeserver.http.routes import add_client_route
from homeserver.streams.tokens import StreamToken


async def upload_keys(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await read_json_object(request)
    answer = await request.app[E2E_KEYS].upload(requester.user_id, requester.device_id, body)
    return json_response(answer)


async def query_keys(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await read_json_object(request)
    query, timeout_ms = parse_query(body), parse_timeout_ms(body)
    return json_response(await request.app[E2E_KEYS].query(requester.user_id, query, timeout_ms))


async def claim_keys(request: web.Request) -> web.Response:
    await get_requester(request)
    body = await read_json_object(request)
    query, timeout_ms = parse_claim(body), parse_timeout_ms(body)
    return json_response(await request.app[E2E_KEYS].claim(query, timeout_ms))


async def key_changes(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    since = request.query.get("from")
    if since is None:
        raise BadRequest("Missing from parameter", Codes.MISSING_PARAM)
    upto = request.query.get("to")
    answer = await request.app[E2E_KEYS].changes(
        requester.user_id,
        StreamToken.parse(since, param="from"),
        None if upto is None else StreamToken.parse(upto, param="to"),
    )
    return json_response(answer)


async def upload_cross_signing_keys(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await read_json_object(request)
    await request.app[E2E_KEYS].cross_signing.upload(requester.user_id, body)
    return json_response({})


async def upload_signatures(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await read_json(request)
    return json_response(await request.app[E2E_KEYS].signatures.upload(requester.user_id, body))


def add_routes(router: web.UrlDispatcher) -> None:
    # Under /unstable too, as Synapse: matrix-js-sdk uploads cross-signing keys and asks for
    # key changes there.
    for method, path, handler in (
        ("POST", "/keys/upload", upload_keys),
        ("POST", "/keys/query", query_keys),
        ("POST", "/keys/claim", claim_keys),
        ("GET", "/keys/changes", key_changes),
        ("POST", "/keys/device_signing/upload", upload_cross_signing_keys),
        ("POST", "/keys/signatures/upload", upload_signatures),
    ):
        add_client_route(router, method, path, handler, unstable=True)
