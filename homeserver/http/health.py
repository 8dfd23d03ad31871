"""``GET /health``: 200 ``OK`` as plain text on every listener (Synapse's; Docker health checks
and load balancers poll it)."""

from __future__ import annotations

from aiohttp import web


async def health(request: web.Request) -> web.Response:
    return web.Response(text="OK", content_type="text/plain")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/health", health)
