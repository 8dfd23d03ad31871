"""``GET /_matrix/federation/v1/version``: this server's name and version (unauthenticated)."""

from __future__ import annotations

from aiohttp import web

from homeserver import __version__
from homeserver.http.json_body import json_response

SERVER_SOFTWARE = "homeserver"


async def version(request: web.Request) -> web.Response:
    return json_response({"server": {"name": SERVER_SOFTWARE, "version": __version__}})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/_matrix/federation/v1/version", version)
