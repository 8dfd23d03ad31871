"""Synapse's media admin API (``synapse/rest/admin/media.py``):

* ``POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}`` and ``…/unquarantine/…``;
* ``DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}`` (local media only);
* ``GET /_synapse/admin/v1/room/{roomId}/media`` — ``{"local": [mxc…], "remote": [mxc…]}``;
* ``POST /_synapse/admin/v1/room/{roomId}/media/quarantine`` — ``{"num_quarantined": n}``;
* ``POST /_synapse/admin/v1/purge_media_cache?before_ts=`` — ``{"deleted": n}``.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import BadRequest, Codes, NotFound
from homeserver.http.admin.auth import require_admin
from homeserver.http.admin.params import int_param
from homeserver.http.appkeys import MEDIA
from homeserver.http.json_body import json_response

V1 = "/_synapse/admin/v1"


async def quarantine(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    await request.app[MEDIA].set_quarantine(
        request.match_info["server_name"], request.match_info["media_id"], requester.user_id
    )
    return json_response({})


async def unquarantine(request: web.Request) -> web.Response:
    await require_admin(request)
    await request.app[MEDIA].set_quarantine(
        request.match_info["server_name"], request.match_info["media_id"], None
    )
    return json_response({})


async def delete_media(request: web.Request) -> web.Response:
    await require_admin(request)
    media = request.app[MEDIA]
    server_name, media_id = request.match_info["server_name"], request.match_info["media_id"]
    if not media.is_local(server_name):
        raise BadRequest("Can only delete local media", Codes.INVALID_PARAM)
    if not await media.delete_local(media_id):
        raise NotFound("Unknown media")
    return json_response({"deleted_media": [media_id], "total": 1})


async def room_media(request: web.Request) -> web.Response:
    await require_admin(request)
    media = request.app[MEDIA]
    room_id = request.match_info["room_id"]
    if not await media.room_exists(room_id):
        raise NotFound("Room not found")
    local: list[str] = []
    remote: list[str] = []
    for origin, media_id in await media.media_of_room(room_id):
        (local if media.is_local(origin) else remote).append(f"mxc://{origin}/{media_id}")
    return json_response({"local": local, "remote": remote})


async def quarantine_room_media(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    media = request.app[MEDIA]
    room_id = request.match_info["room_id"]
    if not await media.room_exists(room_id):
        raise NotFound("Room not found")
    count = 0
    for origin, media_id in await media.media_of_room(room_id):
        await media.set_quarantine(origin, media_id, requester.user_id)
        count += 1
    return json_response({"num_quarantined": count})


async def purge_media_cache(request: web.Request) -> web.Response:
    await require_admin(request)
    if "before_ts" not in request.query:
        raise BadRequest("Missing integer query parameter 'before_ts'", Codes.MISSING_PARAM)
    before_ts = int_param(request, "before_ts", 0)
    deleted = await request.app[MEDIA].purge_remote_cache(before_ts)
    return json_response({"deleted": deleted})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_route("POST", V1 + "/media/quarantine/{server_name}/{media_id}", quarantine)
    router.add_route("POST", V1 + "/media/unquarantine/{server_name}/{media_id}", unquarantine)
    router.add_route("DELETE", V1 + "/media/{server_name}/{media_id}", delete_media)
    router.add_route("GET", V1 + "/room/{room_id}/media", room_media)
    router.add_route("POST", V1 + "/room/{room_id}/media/quarantine", quarantine_room_media)
    router.add_route("POST", V1 + "/purge_media_cache", purge_media_cache)
