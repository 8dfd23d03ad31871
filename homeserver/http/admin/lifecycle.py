"""Our admin additions to Synapse's API, under ``/_homeserver/admin/v1`` (server admins only):

* ``GET /rooms/{roomId}/lifecycle`` — status, predecessor, successor and every transition;
* ``GET /rooms/{roomId}/upgrade_plan?new_version=V[&user_id=U]`` — what an upgrade would do,
  without doing it;
* ``GET /upgrades/stuck[?limit=N]`` — rooms left ``upgrading`` and the newest failed upgrades.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.http.admin.auth import require_admin
from homeserver.http.admin.params import int_param
from homeserver.http.appkeys import ADMIN_LIFECYCLE, UPGRADE_PREVIEW
from homeserver.http.json_body import json_response

PREFIX = "/_homeserver/admin/v1"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


async def room_lifecycle(request: web.Request) -> web.Response:
    await require_admin(request)
    answer = await request.app[ADMIN_LIFECYCLE].lifecycle(request.match_info["room_id"])
    return json_response(answer)


async def upgrade_plan(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    answer = await request.app[UPGRADE_PREVIEW].preview(
        request.match_info["room_id"],
        request.query.get("new_version"),
        upgrader=request.query.get("user_id"),
        admin=requester.user_id,
    )
    return json_response(answer)


async def stuck_upgrades(request: web.Request) -> web.Response:
    await require_admin(request)
    limit = int_param(request, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT)
    return json_response(await request.app[ADMIN_LIFECYCLE].stuck_upgrades(limit))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(PREFIX + "/rooms/{room_id}/lifecycle", room_lifecycle)
    router.add_get(PREFIX + "/rooms/{room_id}/upgrade_plan", upgrade_plan)
    router.add_get(PREFIX + "/upgrades/stuck", stuck_upgrades)
