"""Reporting abuse to the admins (spec v1.13/v1.14; Synapse's ``rest/client/reporting.py``):

* ``POST /rooms/{roomId}/report/{eventId}`` — ``reason``, ``score`` (both optional);
* ``POST /rooms/{roomId}/report`` — ``reason``;
* ``POST /users/{userId}/report`` — ``reason``.

Each answers ``{}``; see admin/reports.py for what is checked.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.http.appkeys import REPORTS
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response, read_json_object
from homeserver.http.routes import add_client_route


async def report_event(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await read_json_object(request)
    await request.app[REPORTS].report_event(
        requester.user_id, request.match_info["room_id"], request.match_info["event_id"], body
    )
    return json_response({})


async def report_room(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await read_json_object(request)
    await request.app[REPORTS].report_room(requester.user_id, request.match_info["room_id"], body)
    return json_response({})


async def report_user(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    body = await read_json_object(request)
    await request.app[REPORTS].report_user(requester.user_id, request.match_info["user_id"], body)
    return json_response({})


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "POST", "/rooms/{room_id}/report/{event_id}", report_event)
    add_client_route(router, "POST", "/rooms/{room_id}/report", report_room)
    add_client_route(router, "POST", "/users/{user_id}/report", report_user)
