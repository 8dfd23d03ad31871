"""Redacting all of a user's events (Synapse's ``POST /_synapse/admin/v1/user/{u}/redact`` and
``GET /_synapse/admin/v1/user/redact_status/{id}``, ``handlers/admin.py``).

The request is checked and recorded (``user_redactions``, migration 031), answered with its
``redact_id``, and the work runs in the background of this process: in each room (given, or
every room the user is joined to or banned from), the user's messages, encrypted messages and
joins are redacted — by the user themselves (a local user, as Synapse's puppeting) or by the
admin (``use_admin``, or a remote user) — through the client path's redaction checks, without
the message rate limit. Events that cannot be redacted are listed in ``failed_redactions``. A
request a stopped process left unfinished is marked failed at the next start, not resumed.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from homeserver.admin.task_registry import TaskRegistry
from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, MatrixError, NotFound
from homeserver.rooms.events_service import RoomEventsService
from homeserver.storage import Store
from homeserver.types import room_id_error, user_id_error

logger = logging.getLogger(__name__)

#: Synapse's default ``limit``: events per room.
DEFAULT_LIMIT = 1000
#: At most this many rooms may be named in one request.
MAX_ROOMS = 10_000


@dataclass(frozen=True, slots=True)
class RedactRequest:
    user_id: str
    rooms: list[str]
    reason: str | None
    limit: int
    use_admin: bool
    before_ts: int | None
    after_ts: int | None


def _optional_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is not None and (type(value) is not int or abs(value) > 2**53 - 1):
        raise BadRequest(f"'{key}' must be an integer", Codes.BAD_JSON)
    return value


def parse_redact_body(user_id: str, body: dict[str, Any]) -> RedactRequest:
    if user_id_error(user_id, historical=True):
        raise BadRequest(f"Invalid user ID {user_id!r}", Codes.INVALID_PARAM)
    rooms = body.get("rooms")
    if not isinstance(rooms, list) or len(rooms) > MAX_ROOMS:
        raise BadRequest("'rooms' must be a list of room IDs", Codes.BAD_JSON)
    for room_id in rooms:
        if not isinstance(room_id, str) or room_id_error(room_id):
            raise BadRequest("'rooms' must be a list of room IDs", Codes.BAD_JSON)
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or "\x00" in reason):
        raise BadRequest("'reason' must be a string", Codes.BAD_JSON)
    limit = _optional_int(body, "limit")
    if limit is not None and limit <= 0:
        raise BadRequest("If limit is provided it must be a non-negative integer greater than 0.")
    use_admin = body.get("use_admin")
    if use_admin is not None and not isinstance(use_admin, bool):
        raise BadRequest("'use_admin' must be true or false", Codes.BAD_JSON)
    return RedactRequest(
        user_id=user_id,
        rooms=list(dict.fromkeys(rooms)),
        reason=reason,
        limit=limit or DEFAULT_LIMIT,
        use_admin=bool(use_admin),
        before_ts=_optional_int(body, "before_ts"),
        after_ts=_optional_int(body, "after_ts"),
    )


class UserRedactions:
    def __init__(
        self,
        store: Store,
        room_events: RoomEventsService,
        server_name: str,
        clock: WallClock,
        instance_name: str = "",
        instance_alive: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.store = store
        #: this process (recorded on each request it runs) and how to ask whether another
        #: process is running (a live one's requests are not ours to fail).
        self.instance_name = instance_name
        self._instance_alive = instance_alive
        self.room_events = room_events
        self.server_name = server_name
        self.clock = clock
        self._tasks = TaskRegistry()

    async def start(self, admin_id: str, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        request = parse_redact_body(user_id, body)
        rooms = request.rooms
        if not rooms:
            rooms = await self.store.state.get_rooms_for_user(user_id, "join")
            rooms += await self.store.state.get_rooms_for_user(user_id, "ban")
        redact_id = secrets.token_urlsafe(12)
        await self.store.admin_user_data.create_redaction(
            redact_id, user_id, self.clock(), self.instance_name
        )
        local = user_id.split(":", 1)[1] == self.server_name
        sender = admin_id if request.use_admin or not local else user_id
        self._tasks.spawn(
            redact_id, self._run(redact_id, sender, request, rooms), name=f"redact {redact_id}"
        )
        return {"redact_id": redact_id}

    async def status(self, redact_id: str) -> dict[str, Any]:
        found = await self.store.admin_user_data.get_redaction(redact_id)
        if found is None:
            raise NotFound(f"redact id '{redact_id}' not found")
        status, failed, error = found
        if status == "complete":
            return {"status": status, "failed_redactions": failed}
        if status == "failed":
            return {"status": status, "error": error or "Unknown error"}
        return {"status": status}

    async def _run(
        self, redact_id: str, sender: str, request: RedactRequest, rooms: list[str]
    ) -> None:
        failed: dict[str, str] = {}
        try:
            await self.store.admin_user_data.update_redaction(redact_id, "active")
            for room_id in rooms:
                events = await self.store.admin_user_data.events_to_redact(
                    request.user_id, room_id, request.before_ts, request.after_ts
                )
                for event_id, event_type, text in events[: request.limit]:
                    if event_type == "m.room.member" and _membership(text) != "join":
                        continue  # as Synapse: of membership events only joins
                    try:
                        await self.room_events.redact(
                            sender,
                            f"admin_redact:{redact_id}",
                            room_id,
                            event_id,
                            event_id[1:65],
                            request.reason,
                            ratelimit=False,
                        )
                    except MatrixError as e:
                        failed[event_id] = e.message
            await self.store.admin_user_data.update_redaction(redact_id, "complete", failed)
        except Exception as e:
            logger.exception("redacting the events of %s (%s)", request.user_id, redact_id)
            await self.store.admin_user_data.update_redaction(
                redact_id, "failed", failed, error=type(e).__name__
            )

    async def recover(self) -> None:
        """At start: what this process's previous run, or a process no longer running, left
        unfinished is failed; a live process's requests go on there."""
        data = self.store.admin_user_data
        for runner in await data.unfinished_redaction_runners():
            mine = runner == self.instance_name  # nothing of this run has started yet
            if mine or self._instance_alive is None or not await self._instance_alive(runner):
                await data.fail_unfinished_redactions(runner)

    async def wait_idle(self) -> None:
        await self._tasks.wait_idle()

    async def stop(self) -> None:
        await self._tasks.stop()


def _membership(text: str) -> str | None:
    content = json.loads(text).get("content")
    membership = content.get("membership") if isinstance(content, dict) else None
    return membership if isinstance(membership, str) else None
