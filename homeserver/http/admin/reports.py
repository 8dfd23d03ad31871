"""Synapse's report admin API (``synapse/rest/admin/event_reports.py``, ``user_reports.py``):

* ``GET /_synapse/admin/v1/event_reports`` — ``from``, ``limit``, ``dir`` (default ``b``),
  ``user_id``, ``room_id``, ``event_sender_user_id``; ``{"event_reports", "total",
  "next_token"?}``;
* ``GET/DELETE /_synapse/admin/v1/event_reports/{reportId}`` — one report with ``event_json``;
* ``GET /_synapse/admin/v1/user_reports`` (``user_id``, ``target_user_id``) and
  ``GET/DELETE /_synapse/admin/v1/user_reports/{reportId}``.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.admin.reports import report_id_of
from homeserver.http.admin.auth import require_admin
from homeserver.http.admin.params import paging, string_param
from homeserver.http.appkeys import REPORTS
from homeserver.http.json_body import json_response

V1 = "/_synapse/admin/v1"


def _newest_first(request: web.Request) -> bool:
    return string_param(request, "dir", "b", allowed=("b", "f")) == "b"


async def list_event_reports(request: web.Request) -> web.Response:
    await require_admin(request)
    start, limit = paging(request)
    body = await request.app[REPORTS].list_event_reports(
        start=start,
        limit=limit,
        backwards=_newest_first(request),
        user_id=string_param(request, "user_id"),
        room_id=string_param(request, "room_id"),
        event_sender=string_param(request, "event_sender_user_id"),
    )
    return json_response(body)


async def get_event_report(request: web.Request) -> web.Response:
    await require_admin(request)
    report_id = report_id_of(request.match_info["report_id"])
    return json_response(await request.app[REPORTS].get_event_report(report_id))


async def delete_event_report(request: web.Request) -> web.Response:
    await require_admin(request)
    report_id = report_id_of(request.match_info["report_id"])
    await request.app[REPORTS].delete_event_report(report_id)
    return json_response({})


async def list_user_reports(request: web.Request) -> web.Response:
    await require_admin(request)
    start, limit = paging(request)
    body = await request.app[REPORTS].list_user_reports(
        start=start,
        limit=limit,
        backwards=_newest_first(request),
        user_id=string_param(request, "user_id"),
        target_user_id=string_param(request, "target_user_id"),
    )
    return json_response(body)


async def get_user_report(request: web.Request) -> web.Response:
    await require_admin(request)
    report_id = report_id_of(request.match_info["report_id"])
    return json_response(await request.app[REPORTS].get_user_report(report_id))


async def delete_user_report(request: web.Request) -> web.Response:
    await require_admin(request)
    report_id = report_id_of(request.match_info["report_id"])
    await request.app[REPORTS].delete_user_report(report_id)
    return json_response({})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(f"{V1}/event_reports", list_event_reports)
    router.add_get(f"{V1}/event_reports/{{report_id}}", get_event_report)
    router.add_delete(f"{V1}/event_reports/{{report_id}}", delete_event_report)
    router.add_get(f"{V1}/user_reports", list_user_reports)
    router.add_get(f"{V1}/user_reports/{{report_id}}", get_user_report)
    router.add_delete(f"{V1}/user_reports/{{report_id}}", delete_user_report)
