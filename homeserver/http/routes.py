"""Registering client-API routes under both ``/_matrix/client/v3`` and ``/_matrix/client/r0``
(older clients and bots still use r0)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

CLIENT_PREFIXES = ("/_matrix/client/v3", "/_matrix/client/r0")
#: Synapse serves its client API here too, and matrix-js-sdk still calls a few endpoints only
#: here (``/keys/device_signing/upload`` and ``/keys/changes``).
UNSTABLE_PREFIX = "/_matrix/client/unstable"


def add_client_route(
    router: web.UrlDispatcher, method: str, path: str, handler: Handler, *, unstable: bool = False
) -> None:
    """``path`` is relative to the version prefix, e.g. ``/rooms/{room_id}/send/{type}/{txn}``;
    ``unstable``: also under ``/_matrix/client/unstable``."""
    for prefix in CLIENT_PREFIXES + ((UNSTABLE_PREFIX,) if unstable else ()):
        router.add_route(method, prefix + path, handler)
