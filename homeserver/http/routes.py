"""Registering client-API routes under both ``/_matrix/client/v3`` and ``/_matrix/client/r0``
(older clients and bots still use r0)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

CLIENT_PREFIXES = ("/_matrix/client/v3", "/_matrix/client/r0")


def add_client_route(router: web.UrlDispatcher, method: str, path: str, handler: Handler) -> None:
    """``path`` is relative to the version prefix, e.g. ``/rooms/{room_id}/send/{type}/{txn}``."""
    for prefix in CLIENT_PREFIXES:
        router.add_route(method, prefix + path, handler)
