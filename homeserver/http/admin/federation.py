"""Synapse's federation admin API (``synapse/rest/admin/federation.py``):

* ``GET /_synapse/admin/v1/federation/destinations`` — list (``from``, ``limit``,
  ``destination``, ``order_by``, ``dir``);
* ``GET …/destinations/{destination}``;
* ``POST …/destinations/{destination}/reset_connection`` — forget the backoff, retry now.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.http.admin.auth import require_admin
from homeserver.http.admin.params import backwards, paging, string_param
from homeserver.http.appkeys import ADMIN_DESTINATIONS
from homeserver.http.json_body import json_response
from homeserver.storage.admin_destinations import DESTINATION_ORDER_COLUMNS

PATH = "/_synapse/admin/v1/federation/destinations"


async def list_destinations(request: web.Request) -> web.Response:
    await require_admin(request)
    start, limit = paging(request)
    body = await request.app[ADMIN_DESTINATIONS].list_destinations(
        start,
        limit,
        order_by=string_param(
            request, "order_by", "destination", allowed=tuple(DESTINATION_ORDER_COLUMNS)
        )
        or "destination",
        backwards=backwards(request),
        name=string_param(request, "destination"),
    )
    return json_response(body)


async def get_destination(request: web.Request) -> web.Response:
    await require_admin(request)
    destinations = request.app[ADMIN_DESTINATIONS]
    return json_response(await destinations.get_destination(request.match_info["destination"]))


async def reset_connection(request: web.Request) -> web.Response:
    await require_admin(request)
    destinations = request.app[ADMIN_DESTINATIONS]
    return json_response(await destinations.reset_connection(request.match_info["destination"]))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(PATH, list_destinations)
    router.add_get(f"{PATH}/{{destination}}", get_destination)
    router.add_post(f"{PATH}/{{destination}}/reset_connection", reset_connection)
