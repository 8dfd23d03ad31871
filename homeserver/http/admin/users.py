"""Synapse's user admin API (``synapse/rest/admin/users.py``):

* ``GET /_synapse/admin/v2/users`` — list (``from``, ``limit``, ``name``, ``user_id``,
  ``guests``, ``deactivated``, ``locked``, ``admins``, ``order_by``, ``dir``);
* ``GET /_synapse/admin/v3/users`` — the same, but ``deactivated`` unset lists everyone,
  ``true`` only deactivated and ``false`` only active users;
* ``GET /_synapse/admin/v1/username_available?username=`` — ``{"available": true}`` or 400;
* ``GET`` / ``PUT /_synapse/admin/v2/users/{userId}`` — one user; create (201) or modify (200);
* ``POST /_synapse/admin/v1/deactivate/{userId}`` — ``{erase}``;
* ``GET /_synapse/admin/v1/whois/{userId}`` (a user may ask about themselves).
"""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import BadRequest, Codes
from homeserver.http.admin.auth import require_admin
from homeserver.http.admin.params import backwards, bool_param, paging, string_param
from homeserver.http.appkeys import ADMIN_USER_DETAILS, ADMIN_USERS
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response, read_json_object
from homeserver.storage.admin_users import USER_ORDER_COLUMNS, UserQuery

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"


def _user_query(request: web.Request, deactivated: bool | None) -> UserQuery:
    start, limit = paging(request)
    # Checked; there are no guest or locked accounts here, nor user types.
    bool_param(request, "guests", True)
    bool_param(request, "locked", False)
    for name in ("user_types", "not_user_type"):
        for value in request.query.getall(name, ()):
            if "\x00" in value:
                raise BadRequest(
                    f"Query parameter {name!r} must not contain NUL", Codes.INVALID_PARAM
                )
    return UserQuery(
        start=start,
        limit=limit,
        name=string_param(request, "name"),
        user_id=string_param(request, "user_id"),
        deactivated=deactivated,
        admins=bool_param(request, "admins"),
        order_by=string_param(request, "order_by", "name", allowed=tuple(USER_ORDER_COLUMNS))
        or "name",
        backwards=backwards(request),
    )


async def list_users(request: web.Request) -> web.Response:
    await require_admin(request)
    # v2: deactivated=true includes deactivated users; otherwise they are left out.
    deactivated = None if bool_param(request, "deactivated", False) else False
    query = _user_query(request, deactivated)
    return json_response(await request.app[ADMIN_USERS].list_users(query))


async def list_users_v3(request: web.Request) -> web.Response:
    await require_admin(request)
    query = _user_query(request, bool_param(request, "deactivated"))
    return json_response(await request.app[ADMIN_USERS].list_users(query))


async def username_available(request: web.Request) -> web.Response:
    await require_admin(request)
    username = string_param(request, "username")
    return json_response(await request.app[ADMIN_USER_DETAILS].username_available(username))


async def get_user(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await request.app[ADMIN_USERS].get_user(request.match_info["user_id"]))


async def put_user(request: web.Request) -> web.Response:
    requester = await require_admin(request)
    body = await read_json_object(request)
    status, user = await request.app[ADMIN_USERS].put_user(
        requester.user_id, request.match_info["user_id"], body
    )
    return json_response(user, status=status)


async def deactivate(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json_object(request)
    erase = body.get("erase", False)
    if not isinstance(erase, bool):
        raise BadRequest("Param 'erase' must be a boolean, if given", Codes.BAD_JSON)
    result = await request.app[ADMIN_USERS].deactivate(request.match_info["user_id"], erase=erase)
    return json_response(result)


async def whois(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await request.app[ADMIN_USERS].whois(
        requester.user_id, requester.is_admin, request.match_info["user_id"]
    )
    return json_response(body)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(f"{V2}/users", list_users)
    router.add_get("/_synapse/admin/v3/users", list_users_v3)
    router.add_get(f"{V1}/username_available", username_available)
    router.add_get(f"{V2}/users/{{user_id}}", get_user)
    router.add_put(f"{V2}/users/{{user_id}}", put_user)
    router.add_post(f"{V1}/deactivate/{{user_id}}", deactivate)
    router.add_get(f"{V1}/whois/{{user_id}}", whois)
