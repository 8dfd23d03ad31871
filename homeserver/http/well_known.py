"""``/.well-known/matrix/client`` and ``/.well-known/matrix/server`` on the client listener,
as Synapse serves them.

The client document names ``public_baseurl`` and is served only when that key is set (without
it the server would only be guessing its own address); the server document (federation
delegation to port 443 of the server name, or its explicit port) only with
``serve_server_wellknown``. Both are public and CORS-enabled: web clients read them before
login.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from homeserver.config import HomeserverConfig
from homeserver.errors import NotFound
from homeserver.http.appkeys import CONFIG
from homeserver.http.json_body import json_response

_HAS_PORT = re.compile(r":[0-9]+$")


def client_well_known(config: HomeserverConfig) -> dict[str, Any] | None:
    base_url = config.server.public_baseurl
    if base_url is None:
        return None
    return {"m.homeserver": {"base_url": base_url}}


def server_well_known(config: HomeserverConfig) -> dict[str, Any] | None:
    if not config.server.serve_server_wellknown:
        return None
    name = config.server_name
    # An IPv6 literal ends in "]" and has no port; any other name may end in ":<port>".
    delegated = name if _HAS_PORT.search(name) and not name.endswith("]") else f"{name}:443"
    return {"m.server": delegated}


async def client(request: web.Request) -> web.Response:
    body = client_well_known(request.app[CONFIG])
    if body is None:
        raise NotFound(".well-known not available")
    return json_response(body)


async def server(request: web.Request) -> web.Response:
    body = server_well_known(request.app[CONFIG])
    if body is None:
        raise NotFound(".well-known not available")
    return json_response(body)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/.well-known/matrix/client", client)
    router.add_get("/.well-known/matrix/server", server)
