"""Synapse's per-user admin API (``synapse/rest/admin/users.py``, ``devices.py``,
``experimental_features.py``), server admins only:

* ``GET/POST /v2/users/{u}/devices``, ``GET/PUT/DELETE /v2/users/{u}/devices/{d}``,
  ``POST /v2/users/{u}/delete_devices``;
* ``GET /v1/users/{u}/joined_rooms``, ``/memberships``, ``/pushers``, ``/accountdata``;
* ``GET/DELETE /v1/users/{u}/media`` (``from``, ``limit``, ``order_by``, ``dir``);
* ``GET/POST/DELETE /v1/users/{u}/override_ratelimit``;
* ``GET /v1/users/{u}/sent_invite_count?from_ts=`` and ``…/cumulative_joined_room_count``;
* ``GET/PUT /v1/experimental_features/{u}``;
* ``POST /v1/users/{u}/login`` (a token for the user), ``POST /v1/reset_password/{u}``,
  ``POST/DELETE /v1/users/{u}/shadow_ban``.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.admin.user_details import MediaPage
from homeserver.errors import BadRequest, Codes
from homeserver.http.admin.auth import require_admin
from homeserver.http.admin.params import backwards, int_param, paging, string_param
from homeserver.http.appkeys import ADMIN_USER_DETAILS
from homeserver.http.json_body import json_response, read_json_object
from homeserver.storage.admin_user_data import MEDIA_ORDER_COLUMNS

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"


def _user(request: web.Request) -> str:
    return request.match_info["user_id"]


async def _optional_body(request: web.Request) -> dict[str, object]:
    """A JSON object, or {} for an empty body (Synapse's ``allow_empty_body``)."""
    if not request.can_read_body:
        return {}
    return await read_json_object(request)


# --- devices ---------------------------------------------------------------------------------
async def list_devices(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await request.app[ADMIN_USER_DETAILS].list_devices(_user(request)))


async def create_device(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json_object(request)
    await request.app[ADMIN_USER_DETAILS].create_device(_user(request), body)
    return json_response({}, status=201)


async def get_device(request: web.Request) -> web.Response:
    await require_admin(request)
    details = request.app[ADMIN_USER_DETAILS]
    return json_response(await details.get_device(_user(request), request.match_info["device_id"]))


async def put_device(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json_object(request)
    await request.app[ADMIN_USER_DETAILS].rename_device(
        _user(request), request.match_info["device_id"], body
    )
    return json_response({})


async def delete_device(request: web.Request) -> web.Response:
    await require_admin(request)
    await request.app[ADMIN_USER_DETAILS].delete_devices(
        _user(request), None, request.match_info["device_id"]
    )
    return json_response({})


async def delete_devices(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json_object(request)
    await request.app[ADMIN_USER_DETAILS].delete_devices(_user(request), body)
    return json_response({})


# --- rooms, media, pushers, account data --------------------------------------------------
async def joined_rooms(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await request.app[ADMIN_USER_DETAILS].joined_rooms(_user(request)))


async def memberships(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await request.app[ADMIN_USER_DETAILS].memberships(_user(request)))


async def pushers(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await request.app[ADMIN_USER_DETAILS].pushers(_user(request)))


async def account_data(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await request.app[ADMIN_USER_DETAILS].account_data(_user(request)))


def _media_page(request: web.Request) -> MediaPage:
    start, limit = paging(request)
    order_by = string_param(request, "order_by", allowed=tuple(MEDIA_ORDER_COLUMNS))
    direction = string_param(request, "dir", allowed=("f", "b"))
    if order_by is None and direction is None:
        # Synapse's default: newest first.
        return MediaPage(start, limit, "created_ts", True)
    return MediaPage(start, limit, order_by or "created_ts", backwards(request))


async def list_media(request: web.Request) -> web.Response:
    await require_admin(request)
    page = _media_page(request)
    return json_response(await request.app[ADMIN_USER_DETAILS].list_media(_user(request), page))


async def delete_media(request: web.Request) -> web.Response:
    await require_admin(request)
    page = _media_page(request)
    details = request.app[ADMIN_USER_DETAILS]
    return json_response(await details.delete_media(_user(request), page))


def _from_ts(request: web.Request) -> int:
    if "from_ts" not in request.query:
        raise BadRequest("Missing integer query parameter 'from_ts'", Codes.MISSING_PARAM)
    return int_param(request, "from_ts", 0)


async def sent_invite_count(request: web.Request) -> web.Response:
    await require_admin(request)
    from_ts = _from_ts(request)
    details = request.app[ADMIN_USER_DETAILS]
    return json_response(await details.sent_invite_count(_user(request), from_ts))


async def joined_room_count(request: web.Request) -> web.Response:
    await require_admin(request)
    from_ts = _from_ts(request)
    details = request.app[ADMIN_USER_DETAILS]
    return json_response(await details.cumulative_joined_room_count(_user(request), from_ts))


# --- rate limits, features, shadow bans -------------------------------------------------------
async def get_ratelimit(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await request.app[ADMIN_USER_DETAILS].get_ratelimit(_user(request)))


async def set_ratelimit(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await _optional_body(request)
    details = request.app[ADMIN_USER_DETAILS]
    return json_response(await details.set_ratelimit(_user(request), body))


async def delete_ratelimit(request: web.Request) -> web.Response:
    await require_admin(request)
    await request.app[ADMIN_USER_DETAILS].delete_ratelimit(_user(request))
    return json_response({})


async def get_features(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await request.app[ADMIN_USER_DETAILS].get_features(_user(request)))


async def put_features(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json_object(request)
    await request.app[ADMIN_USER_DETAILS].set_features(_user(request), body)
    return json_response({})


async def shadow_ban(request: web.Request) -> web.Response:
    await require_admin(request)
    await request.app[ADMIN_USER_DETAILS].set_shadow_banned(_user(request), True)
    return json_response({})


async def unshadow_ban(request: web.Request) -> web.Response:
    await require_admin(request)
    await request.app[ADMIN_USER_DETAILS].set_shadow_banned(_user(request), False)
    return json_response({})


# --- sessions and passwords ------------------------------------------------------------------
async def login_as(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    body = await _optional_body(request)
    details = request.app[ADMIN_USER_DETAILS]
    return json_response(await details.login_as(requester.user_id, _user(request), body))


async def reset_password(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json_object(request)
    await request.app[ADMIN_USER_DETAILS].reset_password(_user(request), body)
    return json_response({})


def add_routes(router: web.UrlDispatcher) -> None:
    user = f"{V1}/users/{{user_id}}"
    router.add_get(f"{V2}/users/{{user_id}}/devices", list_devices)
    router.add_post(f"{V2}/users/{{user_id}}/devices", create_device)
    router.add_get(f"{V2}/users/{{user_id}}/devices/{{device_id}}", get_device)
    router.add_put(f"{V2}/users/{{user_id}}/devices/{{device_id}}", put_device)
    router.add_delete(f"{V2}/users/{{user_id}}/devices/{{device_id}}", delete_device)
    router.add_post(f"{V2}/users/{{user_id}}/delete_devices", delete_devices)
    router.add_get(f"{user}/joined_rooms", joined_rooms)
    router.add_get(f"{user}/memberships", memberships)
    router.add_get(f"{user}/pushers", pushers)
    router.add_get(f"{user}/accountdata", account_data)
    router.add_get(f"{user}/media", list_media)
    router.add_delete(f"{user}/media", delete_media)
    router.add_get(f"{user}/sent_invite_count", sent_invite_count)
    router.add_get(f"{user}/cumulative_joined_room_count", joined_room_count)
    router.add_get(f"{user}/override_ratelimit", get_ratelimit)
    router.add_post(f"{user}/override_ratelimit", set_ratelimit)
    router.add_delete(f"{user}/override_ratelimit", delete_ratelimit)
    router.add_post(f"{user}/shadow_ban", shadow_ban)
    router.add_delete(f"{user}/shadow_ban", unshadow_ban)
    router.add_post(f"{user}/login", login_as)
    router.add_post(f"{V1}/reset_password/{{user_id}}", reset_password)
    router.add_get(f"{V1}/experimental_features/{{user_id}}", get_features)
    router.add_put(f"{V1}/experimental_features/{{user_id}}", put_features)
