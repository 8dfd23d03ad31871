"""``/devices``, ``/devices/{deviceId}`` and ``POST /delete_devices``."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.devices import parse_device_ids, parse_display_name
from homeserver.http.appkeys import ACCOUNTS
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route


async def list_devices(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    devices = await request.app[ACCOUNTS].devices.list_devices(requester.user_id)
    return json_response({"devices": devices})


async def get_device(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    device_id = request.match_info["device_id"]
    return json_response(
        await request.app[ACCOUNTS].devices.get_device(requester.user_id, device_id)
    )


async def rename_device(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    name = parse_display_name(await read_json_object(request))
    await request.app[ACCOUNTS].devices.rename(
        requester.user_id, request.match_info["device_id"], name
    )
    return json_response({})


async def delete_device(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await read_json_object(request)
    await request.app[ACCOUNTS].devices.delete(
        requester.user_id, [request.match_info["device_id"]], body.get("auth")
    )
    return json_response({})


async def delete_devices(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await read_json_object(request)
    device_ids = parse_device_ids(body)
    await request.app[ACCOUNTS].devices.delete(requester.user_id, device_ids, body.get("auth"))
    return json_response({})


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "GET", "/devices", list_devices)
    add_client_route(router, "GET", "/devices/{device_id}", get_device)
    add_client_route(router, "PUT", "/devices/{device_id}", rename_device)
    add_client_route(router, "DELETE", "/devices/{device_id}", delete_device)
    add_client_route(router, "POST", "/delete_devices", delete_devices)
