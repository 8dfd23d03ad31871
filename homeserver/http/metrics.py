"""``GET /_synapse/metrics`` (the ``metrics`` listener resource): Prometheus text."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.appkeys import HS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def metrics(request: web.Request) -> web.Response:
    hs = request.app[HS]
    text = hs.metrics.render(hs.store.db.stats)
    return web.Response(body=text.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/_synapse/metrics", metrics)
