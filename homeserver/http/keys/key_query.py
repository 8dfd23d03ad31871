"""The notary endpoints: ``GET /_matrix/key/v2/query/{serverName}`` and
``POST /_matrix/key/v2/query``.

Each answer is a server's own self-signed key response with our signature added. Our own keys
come straight from our key document; other servers' from the keyring (its last fetched response,
refetched when older than the requested ``minimum_valid_until_ts``). Servers we cannot get keys
for are simply absent.

Anyone may call these, and each remote name can cost us a fetch (discovery, connections, up to
a timeout), so a request names at most :data:`MAX_SERVERS_PER_QUERY` servers and costs its
caller's address one ``rc_remote_key_fetches`` token per remote name (a request larger than the
bucket takes the whole bucket). The keyring bounds how many fetches run at once.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Collection
from typing import Any

from aiohttp import web

from homeserver.crypto.signing import sign_json
from homeserver.errors import BadRequest, Codes
from homeserver.http.appkeys import CLOCK, CONFIG, KEYRING, RATELIMITERS, SIGNING_KEY
from homeserver.http.client_address import client_address
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.keys.server_key import server_keys_document
from homeserver.types import is_valid_server_name

#: One POST may ask about this many servers; more is an amplification attempt. Synapse sets
#: no bound; its own notary client batches what it needs at one time, rarely this many.
MAX_SERVERS_PER_QUERY = 50


async def _charge(request: web.Request, server_names: Collection[str]) -> None:
    """Take the caller's tokens for the remote names, or raise 429 before any work."""
    ratelimiters = request.app[RATELIMITERS]
    server_name = request.app[CONFIG].server_name
    remote = sum(1 for name in server_names if name != server_name)
    if remote:
        limiter = ratelimiters.remote_key_fetches
        await limiter.check(client_address(request), cost=min(remote, limiter.burst_count))


def _minimum_ts(value: Any, now: int, name: str) -> int:
    if value is None:
        return now
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            value = None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadRequest(f"{name} must be a non-negative integer", Codes.INVALID_PARAM)
    return value


async def _keys_for(request: web.Request, server_name: str, minimum_ts: int) -> dict | None:
    config = request.app[CONFIG]
    signing_key = request.app[SIGNING_KEY]
    if server_name == config.server_name:
        return server_keys_document(config, signing_key, request.app[CLOCK]())
    if not config.federation.is_domain_allowed(server_name):
        return None
    response = await request.app[KEYRING].key_response(server_name, minimum_ts)
    if response is None:
        return None
    # Keep the origin's signature and add ours, without touching the keyring's copy.
    return sign_json(copy.deepcopy(response), config.server_name, signing_key)


async def query_one(request: web.Request) -> web.Response:
    server_name = request.match_info["server_name"]
    if not is_valid_server_name(server_name):
        raise BadRequest("Invalid server name", Codes.INVALID_PARAM)
    now = request.app[CLOCK]()
    minimum = _minimum_ts(
        request.query.get("minimum_valid_until_ts"), now, "minimum_valid_until_ts"
    )
    await _charge(request, [server_name])
    document = await _keys_for(request, server_name, minimum)
    return json_response({"server_keys": [document] if document is not None else []})


async def query_many(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    wanted = body.get("server_keys")
    if not isinstance(wanted, dict):
        raise BadRequest("server_keys must be an object", Codes.BAD_JSON)
    if len(wanted) > MAX_SERVERS_PER_QUERY:
        raise BadRequest(f"At most {MAX_SERVERS_PER_QUERY} servers per query", Codes.INVALID_PARAM)
    now = request.app[CLOCK]()
    requests: list[tuple[str, int]] = []
    for server_name, key_criteria in wanted.items():
        if not is_valid_server_name(server_name):
            raise BadRequest(f"Invalid server name {server_name!r}", Codes.INVALID_PARAM)
        if not isinstance(key_criteria, dict):
            raise BadRequest("Each server's entry must be an object", Codes.BAD_JSON)
        minimum = 0
        for criteria in key_criteria.values():
            if not isinstance(criteria, dict):
                raise BadRequest("Each key's criteria must be an object", Codes.BAD_JSON)
            ts = _minimum_ts(criteria.get("minimum_valid_until_ts"), now, "minimum_valid_until_ts")
            minimum = max(minimum, ts)
        requests.append((server_name, minimum if key_criteria else now))
    await _charge(request, [name for name, _ in requests])
    documents = await asyncio.gather(*(_keys_for(request, s, m) for s, m in requests))
    return json_response({"server_keys": [d for d in documents if d is not None]})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/_matrix/key/v2/query/{server_name}", query_one)
    router.add_post("/_matrix/key/v2/query", query_many)
