"""``POST /_synapse/admin/v1/purge_history/{roomId}[/{eventId}]``: purge a room's history up to
an event or a time, in the background, with a status an admin can poll (Synapse's
``PurgeHistoryRestServlet`` and ``purge_history_status``). What a purge deletes and what it
keeps so the room's DAG holds is in storage/history_purge.py.

The request is recorded (``purge_history``, migration 035) before it runs, so its status
survives a restart and an unfinished purge is resumed at start-up (a purge is one transaction:
re-running it is safe).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
from typing import Any

from homeserver.admin.task_registry import TaskRegistry
from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, MatrixError, NotFound
from homeserver.storage import Store
from homeserver.storage.admin_rooms import like_suffix
from homeserver.storage.history_purge import PurgeRecord
from homeserver.types import event_id_error, room_id_error

logger = logging.getLogger(__name__)

_ID_ALPHABET = string.ascii_letters


def status_json(record: PurgeRecord) -> dict[str, Any]:
    """Synapse's answer: ``status`` (``active`` while scheduled or running), ``error`` when it
    failed."""
    status = "active" if record.status == "scheduled" else record.status
    body: dict[str, Any] = {"status": status}
    if record.error is not None:
        body["error"] = record.error
    return body


class HistoryPurgeService:
    def __init__(self, *, store: Store, server_name: str, clock: WallClock) -> None:
        self.store = store
        self.server_name = server_name
        self.clock = clock
        self._tasks = TaskRegistry()

    async def start(
        self, room_id: str, event_id: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Check the request, record it and start it; ``{"purge_id"}``."""
        if room_id_error(room_id):
            raise BadRequest(f"{room_id} is not a legal room ID", Codes.INVALID_PARAM)
        delete_local = body.get("delete_local_events", False)
        if not isinstance(delete_local, bool):
            raise BadRequest("'delete_local_events' must be a boolean", Codes.BAD_JSON)
        if await self.store.rooms.get_room(room_id) is None:
            raise NotFound("Room not found")
        if event_id is None and "purge_up_to_event_id" in body:
            event_id = body["purge_up_to_event_id"]
            if not isinstance(event_id, str):
                raise BadRequest("'purge_up_to_event_id' must be a string", Codes.BAD_JSON)
        purges = self.store.history_purge
        if event_id is not None:
            if event_id_error(event_id):
                raise BadRequest(f"{event_id} is not a legal event ID", Codes.INVALID_PARAM)
            depth = await purges.depth_of(room_id, event_id)
            if depth is None:
                raise BadRequest("Event is for wrong room.", Codes.UNKNOWN)
        elif "purge_up_to_ts" in body:
            ts = body["purge_up_to_ts"]
            if type(ts) is not int or not 0 <= ts < 2**62:
                raise BadRequest(
                    "purge_up_to_ts must be an int, got: " + type(ts).__name__, Codes.INVALID_PARAM
                )
            depth = await purges.depth_at_ts(room_id, ts)
            if depth is None:
                raise BadRequest("there is no event to be purged", Codes.NOT_FOUND)
        else:
            raise BadRequest(
                "must specify purge_up_to_event_id or purge_up_to_ts", Codes.MISSING_PARAM
            )
        purge_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))
        params = {"before_depth": depth, "delete_local_events": delete_local}
        if not await purges.add(purge_id, room_id, params, self.clock()):
            raise BadRequest(f"History purge already in progress for {room_id}", Codes.UNKNOWN)
        logger.info("starting history purge %s of %s before depth %d", purge_id, room_id, depth)
        self._spawn(purge_id)
        return {"purge_id": purge_id}

    async def status(self, purge_id: str) -> dict[str, Any]:
        record = await self.store.history_purge.get(purge_id)
        if record is None:
            raise NotFound(f"purge id '{purge_id}' not found")
        return status_json(record)

    # --- background tasks -------------------------------------------------------------------
    def _spawn(self, purge_id: str) -> None:
        self._tasks.spawn(purge_id, self._run(purge_id), name=f"history purge {purge_id}")

    async def resume(self) -> None:
        for record in await self.store.history_purge.get_unfinished():
            if record.purge_id not in self._tasks:
                logger.info("resuming history purge %s of %s", record.purge_id, record.room_id)
                self._spawn(record.purge_id)

    async def wait(self, purge_id: str) -> None:
        await self._tasks.wait(purge_id)

    async def wait_idle(self) -> None:
        await self._tasks.wait_idle()

    async def stop(self) -> None:
        await self._tasks.stop()

    async def _run(self, purge_id: str) -> None:
        purges = self.store.history_purge
        record = await purges.get(purge_id)
        if record is None:
            return
        try:
            await purges.update(purge_id, status="active", now=self.clock())
            deleted = await purges.purge(
                record.room_id,
                int(record.params["before_depth"]),
                delete_local=bool(record.params.get("delete_local_events")),
                local_suffix=like_suffix(self.server_name),
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:
            logger.exception("history purge %s of %s failed", purge_id, record.room_id)
            message = e.message if isinstance(e, MatrixError) else "Internal error"
            await purges.update(purge_id, status="failed", now=self.clock(), error=message)
            return
        logger.info("history purge %s: %d events deleted", purge_id, deleted)
        await purges.update(purge_id, status="complete", now=self.clock(), deleted=deleted)


class ScheduledTasks:
    """``GET /_synapse/admin/v1/scheduled_tasks``: the server's background tasks — room
    deletions and history purges — with Synapse's keys (``id``, ``action``, ``status``,
    ``timestamp_ms``, ``resource_id``, ``result``, ``error``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def list(
        self,
        *,
        action_name: str | None,
        resource_id: str | None,
        status: str | None,
        max_timestamp: int | None,
    ) -> dict[str, Any]:
        tasks: list[dict[str, Any]] = []
        for purge in await self.store.history_purge.get_all():
            tasks.append(
                {
                    "id": purge.purge_id,
                    "action": "purge_history",
                    "status": purge.status,
                    "timestamp_ms": purge.updated_ts,
                    "resource_id": purge.room_id,
                    "result": {"deleted_events": purge.deleted}
                    if purge.status == "complete"
                    else None,
                    "error": purge.error,
                }
            )
        for deletion in await self.store.room_deletions.get_all():
            purge_room = deletion.params.get("purge", True)
            tasks.append(
                {
                    "id": deletion.delete_id,
                    "action": "shutdown_and_purge_room" if purge_room else "shutdown_room",
                    "status": deletion.status,
                    "timestamp_ms": deletion.updated_ts,
                    "resource_id": deletion.room_id,
                    "result": {"shutdown_room": deletion.result},
                    "error": deletion.error,
                }
            )
        chosen = [
            t
            for t in tasks
            if (action_name is None or t["action"] == action_name)
            and (resource_id is None or t["resource_id"] == resource_id)
            and (status is None or t["status"] == status)
            and (max_timestamp is None or t["timestamp_ms"] < max_timestamp)
        ]
        chosen.sort(key=lambda t: (t["timestamp_ms"], t["id"]))
        return {"scheduled_tasks": chosen}
