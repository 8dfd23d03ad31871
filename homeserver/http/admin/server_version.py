"""``GET /_synapse/admin/v1/server_version`` → ``{"server_version": ...}``.

Unauthenticated, as in Synapse: admin UIs show it on their login page, before they have a
token (and the same version is public at ``/_matrix/federation/v1/version``)."""

from __future__ import annotations

from aiohttp import web

from homeserver import __version__
from homeserver.http.json_body import json_response


async def server_version(request: web.Request) -> web.Response:
    return json_response({"server_version": __version__})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/_synapse/admin/v1/server_version", server_version)
