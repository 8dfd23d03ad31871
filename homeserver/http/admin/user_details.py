"""Synapse's per-user admin API (``synapse/rest/admin/users.py``, ``devices.py``,
``experimental_features.py``), server admins only:

* ``GET/POST /v2/users/{u}/devices``, ``GET/PUT/DELETE /v2/users/{u}/devices/{d}``,
  ``POST /v2/users/{u}/delete_devices``;
* ``GET /v1/users/{u}/joined_rooms``, ``/memberships``, ``/pushers``, ``/accountdata``;
* ``GET/POST/DELETE /v1/users/{u}/override_ratelimit``;
* ``GET /v1/users/{u}/sent_invite_count?from_ts=`` and ``…/cumulative_joined_room_count``;
* ``GET/PUT /v1/experimental_features/{u}``;
* ``POST /v1/users/{u}/login`` (a token for the user), ``POST /v1/reset_password/{u}``,
  ``POST/DELETE /v1/users/{u}/shadow_ban``, ``PUT /v1/suspend/{u}``;
* ``POST /v1/user/{u}/redact``, ``GET /v1/user/redact_status/{id}`` (``admin/user_redaction.py``);
* ``POST /v1/users/{u}/_allow_cross_signing_replacement_without_uia``;
* ``POST /v1/account_validity/validity`` (400: accounts do not expire here);
* ``GET /v1/threepid/{medium}/users/{address}``, ``GET /v1/auth_providers/{p}/users/{id}``
  (404: we keep neither).
"""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import BadRequest, Codes, NotFound
from homeserver.http.admin.auth import require_admin
from homeserver.http.admin.params import int_param
from homeserver.http.appkeys import ADMIN_USER_DETAILS, USER_REDACTIONS
from homeserver.http.json_body import json_response, read_json_object

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


async def suspend(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json_object(request)
    return json_response(await request.app[ADMIN_USER_DETAILS].set_suspended(_user(request), body))


async def allow_cross_signing_replacement(request: web.Request) -> web.Response:
    await require_admin(request)
    details = request.app[ADMIN_USER_DETAILS]
    return json_response(await details.allow_cross_signing_replacement(_user(request)))


async def account_validity(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json_object(request)
    return json_response(await request.app[ADMIN_USER_DETAILS].renew_account_validity(body))


async def user_by_threepid(request: web.Request) -> web.Response:
    """We keep no third-party IDs: nobody is found (Synapse's 404)."""
    await require_admin(request)
    raise NotFound("User not found")


async def user_by_external_id(request: web.Request) -> web.Response:
    """We keep no external IDs (no SSO): nobody is found (Synapse's 404)."""
    await require_admin(request)
    raise NotFound("User not found")


async def redact_user(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    body = await read_json_object(request)
    redactions = request.app[USER_REDACTIONS]
    return json_response(await redactions.start(requester.user_id, _user(request), body))


async def redact_status(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await request.app[USER_REDACTIONS].status(request.match_info["redact_id"]))


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
    router.add_get(f"{user}/sent_invite_count", sent_invite_count)
    router.add_get(f"{user}/cumulative_joined_room_count", joined_room_count)
    router.add_get(f"{user}/override_ratelimit", get_ratelimit)
    router.add_post(f"{user}/override_ratelimit", set_ratelimit)
    router.add_delete(f"{user}/override_ratelimit", delete_ratelimit)
    router.add_post(f"{user}/shadow_ban", shadow_ban)
    router.add_delete(f"{user}/shadow_ban", unshadow_ban)
    router.add_post(f"{user}/login", login_as)
    router.add_post(f"{V1}/reset_password/{{user_id}}", reset_password)
    router.add_put(f"{V1}/suspend/{{user_id}}", suspend)
    router.add_post(f"{V1}/user/{{user_id}}/redact", redact_user)
    router.add_get(f"{V1}/user/redact_status/{{redact_id}}", redact_status)
    router.add_post(
        f"{user}/_allow_cross_signing_replacement_without_uia", allow_cross_signing_replacement
    )
    router.add_post(f"{V1}/account_validity/validity", account_validity)
    router.add_get(f"{V1}/threepid/{{medium}}/users/{{address}}", user_by_threepid)
    router.add_get(f"{V1}/auth_providers/{{provider}}/users/{{external_id}}", user_by_external_id)
    router.add_get(f"{V1}/experimental_features/{{user_id}}", get_features)
    router.add_put(f"{V1}/experimental_features/{{user_id}}", put_features)
