"""Builds the aiohttp application for one listener from the resources it serves."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from homeserver.http import health
from homeserver.http.client import versions
from homeserver.http.keys import server_key
from homeserver.http.middleware import cors_middleware, error_middleware

#: Request bodies larger than this are refused with 413 M_TOO_LARGE (events are at most 64 KiB;
#: room creation with initial_state is the largest body we take).
MAX_REQUEST_BYTES = 1024 * 1024


def new_listener_app(resources: Iterable[str]) -> web.Application:
    """An application serving ``/health`` plus the routes of each named resource. The caller
    (homeserver.app) puts the shared objects under the keys in homeserver.http.appkeys."""
    served = frozenset(resources)
    app = web.Application(
        middlewares=[cors_middleware, error_middleware], client_max_size=MAX_REQUEST_BYTES
    )
    health.add_routes(app.router)
    if "client" in served:
        versions.add_routes(app.router)
    if "keys" in served:
        server_key.add_routes(app.router)
    return app
