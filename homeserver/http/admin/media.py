"""Synapse's media admin API (``synapse/rest/admin/media.py``):

* ``POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}`` and ``…/unquarantine/…``;
* ``DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}`` (local media only);
* ``GET /_synapse/admin/v1/room/{roomId}/media`` — ``{"local": [mxc…], "remote": [mxc…]}``;
* ``POST /_synapse/admin/v1/room/{roomId}/media/quarantine`` — ``{"num_quarantined": n}``;
* ``POST /_synapse/admin/v1/purge_media_cache?before_ts=`` — ``{"deleted": n}``;
* ``POST /_synapse/admin/v1/media/delete?before_ts=&size_gt=&keep_profiles=`` (and the older
  ``/media/{serverName}/delete``) — ``{"deleted_media", "total"}``;
* ``POST /_synapse/admin/v1/media/protect/{mediaId}`` and ``…/unprotect/…`` — ``{}``;
* ``GET /_synapse/admin/v1/statistics/users/media`` — ``{"users": [{user_id, displayname,
  media_count, media_length}], "total", "next_token"?}``;
* ``GET/DELETE /_synapse/admin/v1/users/{userId}/media`` and
  ``POST /_synapse/admin/v1/user/{userId}/media/quarantine``.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import BadRequest, Codes, NotFound
from homeserver.http.admin.auth import require_admin
from homeserver.http.admin.params import bool_param, int_param, paging, string_param
from homeserver.http.appkeys import ADMIN_MEDIA, MEDIA
from homeserver.http.json_body import json_response
from homeserver.storage.admin_media import STATS_ORDERS, USER_MEDIA_ORDERS

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


async def delete_old_media(request: web.Request) -> web.Response:
    await require_admin(request)
    server_name = request.match_info.get("server_name")
    if server_name is not None and not request.app[MEDIA].is_local(server_name):
        raise BadRequest("Can only delete local media", Codes.INVALID_PARAM)
    if "before_ts" not in request.query:
        raise BadRequest("Missing integer query parameter 'before_ts'", Codes.MISSING_PARAM)
    body = await request.app[ADMIN_MEDIA].delete_old_media(
        before_ts=int_param(request, "before_ts", 0),
        size_gt=int_param(request, "size_gt", 0),
        keep_profiles=bool(bool_param(request, "keep_profiles", True)),
    )
    return json_response(body)


async def protect(request: web.Request) -> web.Response:
    await require_admin(request)
    await request.app[ADMIN_MEDIA].set_protected(request.match_info["media_id"], True)
    return json_response({})


async def unprotect(request: web.Request) -> web.Response:
    await require_admin(request)
    await request.app[ADMIN_MEDIA].set_protected(request.match_info["media_id"], False)
    return json_response({})


def _optional_ts(request: web.Request, name: str) -> int | None:
    return int_param(request, name, 0) if name in request.query else None


async def users_media_statistics(request: web.Request) -> web.Response:
    await require_admin(request)
    start, limit = paging(request)
    search_term = string_param(request, "search_term")
    if search_term == "":
        raise BadRequest("search_term cannot be an empty string", Codes.INVALID_PARAM)
    body = await request.app[ADMIN_MEDIA].usage_statistics(
        start=start,
        limit=limit,
        order_by=string_param(request, "order_by", "user_id", allowed=tuple(STATS_ORDERS))
        or "user_id",
        backwards=string_param(request, "dir", "f", allowed=("f", "b")) == "b",
        from_ts=_optional_ts(request, "from_ts"),
        until_ts=_optional_ts(request, "until_ts"),
        search_term=search_term,
    )
    return json_response(body)


async def user_media(request: web.Request) -> web.Response:
    await require_admin(request)
    asked = "order_by" in request.query or "dir" in request.query
    default_dir = "f" if asked else "b"
    start, limit = paging(request)
    body = await request.app[ADMIN_MEDIA].media_of_user(
        request.match_info["user_id"],
        start=start,
        limit=limit,
        order_by=string_param(request, "order_by", "created_ts", allowed=tuple(USER_MEDIA_ORDERS))
        or "created_ts",
        # Newest first unless an order is asked for (Synapse).
        backwards=string_param(request, "dir", default_dir, allowed=("f", "b")) == "b",
    )
    return json_response(body)


async def delete_user_media(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await request.app[ADMIN_MEDIA].delete_media_of_user(request.match_info["user_id"])
    return json_response(body)


async def quarantine_user_media(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    body = await request.app[ADMIN_MEDIA].quarantine_media_of_user(
        request.match_info["user_id"], requester.user_id
    )
    return json_response(body)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_route("POST", V1 + "/media/quarantine/{server_name}/{media_id}", quarantine)
    router.add_route("POST", V1 + "/media/unquarantine/{server_name}/{media_id}", unquarantine)
    router.add_route("DELETE", V1 + "/media/{server_name}/{media_id}", delete_media)
    router.add_route("GET", V1 + "/room/{room_id}/media", room_media)
    router.add_route("POST", V1 + "/room/{room_id}/media/quarantine", quarantine_room_media)
    router.add_route("POST", V1 + "/purge_media_cache", purge_media_cache)
    # The fixed paths before ``/media/{server_name}/{media_id}`` would not clash (other
    # methods), but ``/media/delete`` must not read as a server named "delete".
    router.add_route("POST", V1 + "/media/delete", delete_old_media)
    router.add_route("POST", V1 + "/media/{server_name}/delete", delete_old_media)
    router.add_route("POST", V1 + "/media/protect/{media_id}", protect)
    router.add_route("POST", V1 + "/media/unprotect/{media_id}", unprotect)
    router.add_route("GET", V1 + "/statistics/users/media", users_media_statistics)
    router.add_route("GET", V1 + "/users/{user_id}/media", user_media)
    router.add_route("DELETE", V1 + "/users/{user_id}/media", delete_user_media)
    router.add_route("POST", V1 + "/user/{user_id}/media/quarantine", quarantine_user_media)
