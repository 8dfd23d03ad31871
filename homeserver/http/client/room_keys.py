"""Server-side key backup: ``/room_keys/version[/{version}]`` and
``/room_keys/keys[/{roomId}[/{sessionId}]]?version=``."""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import BadRequest, Codes
from homeserver.http.appkeys import KEY_BACKUP
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route


def _version_param(request: web.Request) -> str:
    version = request.query.get("version")
    if version is None:
        raise BadRequest("Missing 'version' query parameter", Codes.MISSING_PARAM)
    return version


def _room_and_session(request: web.Request) -> tuple[str | None, str | None]:
    return request.match_info.get("room_id"), request.match_info.get("session_id")


async def create_version(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await read_json_object(request)
    return json_response(await request.app[KEY_BACKUP].create_version(requester.user_id, body))


async def get_current_version(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    return json_response(await request.app[KEY_BACKUP].get_version(requester.user_id, None))


async def get_version(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    version = request.match_info["version"]
    return json_response(await request.app[KEY_BACKUP].get_version(requester.user_id, version))


async def update_version(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await read_json_object(request)
    version = request.match_info["version"]
    answer = await request.app[KEY_BACKUP].update_version(requester.user_id, version, body)
    return json_response(answer)


async def delete_version(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    version = request.match_info["version"]
    return json_response(await request.app[KEY_BACKUP].delete_version(requester.user_id, version))


async def put_keys(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    version = _version_param(request)
    body = await read_json_object(request)
    room_id, session_id = _room_and_session(request)
    answer = await request.app[KEY_BACKUP].upload_keys(
        requester.user_id, version, body, room_id, session_id
    )
    return json_response(answer)


async def get_keys(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    version = _version_param(request)
    room_id, session_id = _room_and_session(request)
    answer = await request.app[KEY_BACKUP].get_keys(requester.user_id, version, room_id, session_id)
    return json_response(answer)


async def delete_keys(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    version = _version_param(request)
    room_id, session_id = _room_and_session(request)
    answer = await request.app[KEY_BACKUP].delete_keys(
        requester.user_id, version, room_id, session_id
    )
    return json_response(answer)


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "POST", "/room_keys/version", create_version)
    add_client_route(router, "GET", "/room_keys/version", get_current_version)
    add_client_route(router, "GET", "/room_keys/version/{version}", get_version)
    add_client_route(router, "PUT", "/room_keys/version/{version}", update_version)
    add_client_route(router, "DELETE", "/room_keys/version/{version}", delete_version)
    for path in (
        "/room_keys/keys",
        "/room_keys/keys/{room_id}",
        "/room_keys/keys/{room_id}/{session_id}",
    ):
        add_client_route(router, "PUT", path, put_keys)
        add_client_route(router, "GET", path, get_keys)
        add_client_route(router, "DELETE", path, delete_keys)
