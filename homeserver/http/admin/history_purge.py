"""Synapse's purge history and scheduled tasks admin API:

* ``POST /_synapse/admin/v1/purge_history/{roomId}[/{eventId}]`` — ``{"delete_local_events"?,
  "purge_up_to_event_id"? | "purge_up_to_ts"?}`` → ``{"purge_id"}``;
* ``GET /_synapse/admin/v1/purge_history_status/{purgeId}`` → ``{"status", "error"?}``;
* ``GET /_synapse/admin/v1/scheduled_tasks`` (``action_name``, ``resource_id``, ``status`` or
  ``job_status``, ``max_timestamp``) → ``{"scheduled_tasks": [...]}``.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.http.admin.auth import require_admin
from homeserver.http.admin.params import int_param, string_param
from homeserver.http.appkeys import HISTORY_PURGE, SCHEDULED_TASKS
from homeserver.http.json_body import json_response, read_json_object

V1 = "/_synapse/admin/v1"
TASK_STATUSES = ("scheduled", "active", "complete", "cancelled", "failed")


async def purge_history(request: web.Request) -> web.Response:
    await require_admin(request)
    body = await read_json_object(request)
    answer = await request.app[HISTORY_PURGE].start(
        request.match_info["room_id"], request.match_info.get("event_id"), body
    )
    return json_response(answer)


async def purge_status(request: web.Request) -> web.Response:
    await require_admin(request)
    return json_response(await request.app[HISTORY_PURGE].status(request.match_info["purge_id"]))


async def scheduled_tasks(request: web.Request) -> web.Response:
    await require_admin(request)
    status = string_param(request, "status", allowed=TASK_STATUSES) or string_param(
        request, "job_status", allowed=TASK_STATUSES
    )
    body = await request.app[SCHEDULED_TASKS].list(
        action_name=string_param(request, "action_name"),
        resource_id=string_param(request, "resource_id"),
        status=status,
        max_timestamp=int_param(request, "max_timestamp", 0)
        if "max_timestamp" in request.query
        else None,
    )
    return json_response(body)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post(f"{V1}/purge_history/{{room_id}}", purge_history)
    router.add_post(f"{V1}/purge_history/{{room_id}}/{{event_id}}", purge_history)
    router.add_get(f"{V1}/purge_history_status/{{purge_id}}", purge_status)
    router.add_get(f"{V1}/scheduled_tasks", scheduled_tasks)
