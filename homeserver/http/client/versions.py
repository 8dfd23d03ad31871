"""``GET /_matrix/client/versions``: the spec versions this server speaks."""

from __future__ import annotations

from aiohttp import web

#: The list Synapse 1.157 advertises (r0 for old clients and bots, then v1.1 to v1.12).
SUPPORTED_VERSIONS: tuple[str, ...] = (
    "r0.0.1",
    "r0.1.0",
    "r0.2.0",
    "r0.3.0",
    "r0.4.0",
    "r0.5.0",
    "r0.6.0",
    "r0.6.1",
    *(f"v1.{minor}" for minor in range(1, 13)),
)

# Synapse's caching for unauthenticated callers: clients poll this on every start.
_HEADERS = {
    "Cache-Control": "public, max-age=600, s-maxage=3600, stale-while-revalidate=600",
    "Vary": "Authorization",
}


async def versions(request: web.Request) -> web.Response:
    body = {"versions": list(SUPPORTED_VERSIONS), "unstable_features": {}}
    return web.json_response(body, headers=_HEADERS)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/_matrix/client/versions", versions)
