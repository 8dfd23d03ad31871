"""``/profile/{userId}`` and its ``displayname`` / ``avatar_url`` fields.

Reading a profile needs no access token (Synapse's default); a token that is sent must be
valid."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.profile import parse_profile_field
from homeserver.http.appkeys import PROFILES
from homeserver.http.auth import get_optional_requester, get_requester
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route

FIELDS = ("displayname", "avatar_url")


async def get_profile(request: web.Request) -> web.Response:
    await get_optional_requester(request)
    return json_response(await request.app[PROFILES].lookup(request.match_info["user_id"]))


def _field_handlers(field: str) -> tuple[web.RequestHandler, web.RequestHandler]:
    async def get_field(request: web.Request) -> web.Response:
        await get_optional_requester(request)
        profile = await request.app[PROFILES].lookup(request.match_info["user_id"])
        return json_response({field: profile[field]} if field in profile else {})

    async def put_field(request: web.Request) -> web.Response:
        requester = await get_requester(request)
        value = parse_profile_field(await read_json_object(request), field)
        await request.app[PROFILES].set_field(
            requester.user_id, requester.is_admin, request.match_info["user_id"], field, value
        )
        return json_response({})

    return get_field, put_field


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "GET", "/profile/{user_id}", get_profile)
    for field in FIELDS:
        get_field, put_field = _field_handlers(field)
        add_client_route(router, "GET", f"/profile/{{user_id}}/{field}", get_field)
        add_client_route(router, "PUT", f"/profile/{{user_id}}/{field}", put_field)
