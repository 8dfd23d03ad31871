"""``GET /_matrix/client/versions``: the spec versions and unstable features this server
serves, read off the routes it actually has.

A client turns features on from this answer (matrix-js-sdk and Cinny fetch media through the
authenticated ``/_matrix/client/v1/media`` endpoints once ``v1.11`` is listed, and list threads
through ``/threads`` once ``v1.4`` is), so a version is advertised only when the endpoints a
client switches to on seeing it are served by this listener. The versions without such an
endpoint are listed as Synapse lists them.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from homeserver.config import EncryptionByDefault, HomeserverConfig
from homeserver.http.appkeys import CONFIG

#: The versions Synapse 1.157 advertises (r0 for old clients and bots, then v1.1 to v1.12).
ALL_VERSIONS: tuple[str, ...] = (
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

#: version → the routes ("METHOD path", path parameters as ``{}``) a client uses because the
#: version is listed; the version is advertised only when all of them are served.
VERSION_REQUIRES: dict[str, tuple[str, ...]] = {
    "v1.4": ("GET /_matrix/client/v1/rooms/{}/threads",),
    "v1.11": (
        "GET /_matrix/client/v1/media/config",
        "GET /_matrix/client/v1/media/download/{}/{}",
        "GET /_matrix/client/v1/media/thumbnail/{}/{}",
    ),
}

# Synapse's caching for unauthenticated callers: clients poll this on every start.
_HEADERS = {
    "Cache-Control": "public, max-age=600, s-maxage=3600, stale-while-revalidate=600",
    "Vary": "Authorization",
}
_PARAMETER = re.compile(r"\{[^}]*\}")


def served_routes(router: web.UrlDispatcher) -> frozenset[str]:
    """Every route of ``router`` as ``"METHOD path"`` with its parameters written ``{}``."""
    return frozenset(
        f"{route.method} {_PARAMETER.sub('{}', route.resource.canonical)}"
        for route in router.routes()
        if route.resource is not None
    )


def advertised_versions(served: frozenset[str]) -> list[str]:
    return [
        version
        for version in ALL_VERSIONS
        if all(route in served for route in VERSION_REQUIRES.get(version, ()))
    ]


def unstable_features(config: HomeserverConfig) -> dict[str, bool]:
    """The unstable features served, as Synapse names them: cross-signing, private read
    receipts (MSC2285; matrix-js-sdk sends ``m.read.private`` to /read_markers only with this
    or v1.4), and whether new rooms of each preset are encrypted (Element then does not offer
    an unencrypted room)."""
    encryption = config.rooms.encryption_enabled_by_default_for_room_type
    return {
        "org.matrix.e2e_cross_signing": True,
        "org.matrix.msc2285.stable": True,
        "io.element.e2ee_forced.public": encryption is EncryptionByDefault.ALL,
        "io.element.e2ee_forced.private": encryption is not EncryptionByDefault.OFF,
        "io.element.e2ee_forced.trusted_private": encryption is not EncryptionByDefault.OFF,
    }


async def versions(request: web.Request) -> web.Response:
    body: dict[str, Any] = {
        "versions": advertised_versions(served_routes(request.app.router)),
        "unstable_features": unstable_features(request.app[CONFIG]),
    }
    return web.json_response(body, headers=_HEADERS)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/_matrix/client/versions", versions)
