"""The room lifecycle as an operator sees it (``/_homeserver/admin/v1``): a room's status,
predecessor, successor and every transition; rooms stuck ``upgrading``; recent failed upgrades.

Failed upgrades reach the database through :class:`UpgradeFailureRecorder`, a subscriber of the
domain-event bus (``room.upgrade.failed``), so the list survives a restart.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, NotFound
from homeserver.rooms.bus import ROOM_UPGRADE_FAILED, DomainEvent
from homeserver.rooms.lifecycle import RoomStatus
from homeserver.storage import Store
from homeserver.storage.rooms import LifecycleTransition, RoomRecord
from homeserver.storage.upgrade_audit import UpgradeAuditStore
from homeserver.types import room_id_error

#: ``room.upgrade.failed`` reasons that are a refusal of the client's request, not a failure
#: of the server: not recorded (any user could fill the table with them; metrics count them).
CLIENT_REFUSALS = frozenset(
    {
        "invalid_request",
        "not_found",
        "forbidden",
        "unsupported_version",
        "in_progress",
        "already_tombstoned",
        "rate_limited",
    }
)


class UpgradeFailureRecorder:
    """Bus subscriber: records each server-side upgrade failure with the time it was seen."""

    def __init__(self, audit: UpgradeAuditStore, clock: WallClock) -> None:
        self.audit = audit
        self.clock = clock

    def __call__(self, event: DomainEvent) -> Awaitable[None] | None:
        # Synchronous for the events it ignores (every room created, every upgrade done): the
        # bus then has nothing to wait for, where a coroutine costs it a turn of the loop.
        if event.name != ROOM_UPGRADE_FAILED:
            return None
        room_id, reason = event.payload.get("room_id"), event.payload.get("reason")
        if not isinstance(room_id, str) or room_id_error(room_id):
            return None
        reason = reason if isinstance(reason, str) and reason else "unknown"
        if reason in CLIENT_REFUSALS:
            return None
        return self.audit.record_failure(room_id, reason, self.clock())


def _transition_json(t: LifecycleTransition) -> dict[str, Any]:
    return {
        "from": t.from_status,
        "to": t.to_status,
        "actor": t.actor,
        "reason": t.reason,
        "ts": t.ts,
    }


class RoomLifecycleAdmin:
    def __init__(self, store: Store, clock: WallClock) -> None:
        self.store = store
        self.clock = clock

    async def lifecycle(self, room_id: str) -> dict[str, Any]:
        """``GET /_homeserver/admin/v1/rooms/{roomId}/lifecycle``."""
        reason = room_id_error(room_id)
        if reason:
            raise BadRequest(reason, Codes.INVALID_PARAM)
        room = await self.store.rooms.get_room(room_id)
        if room is None:
            raise NotFound(f"Unknown room id {room_id}")
        transitions = await self.store.rooms.get_transitions(room_id)
        answer: dict[str, Any] = {
            "room_id": room_id,
            "status": room.status,
            "room_version": room.room_version,
            "creator": room.creator,
            "created_ts": room.created_ts,
            "predecessor": await self._predecessor(room_id),
            "successor": await self._successor(room, transitions),
            "transitions": [_transition_json(t) for t in transitions],
        }
        if room.status == RoomStatus.UPGRADING:
            answer["upgrade_lock"] = {
                "holder": room.upgrade_lock_holder,
                "expires_ts": room.upgrade_lock_expires_ts,
            }
        return answer

    async def _predecessor(self, room_id: str) -> dict[str, Any] | None:
        create = await self.store.state.get_current_state_event(room_id, "m.room.create", "")
        found = create.content.get("predecessor") if create is not None else None
        if not isinstance(found, dict) or not isinstance(found.get("room_id"), str):
            return None
        event_id = found.get("event_id")  # absent in v12 rooms
        return {
            "room_id": found["room_id"],
            "event_id": event_id if isinstance(event_id, str) else None,
        }

    async def _successor(
        self, room: RoomRecord, transitions: list[LifecycleTransition]
    ) -> dict[str, Any] | None:
        replacement = room.replacement_room_id
        if replacement is None:
            return None
        answer: dict[str, Any] = {"room_id": replacement, "version": None}
        record = await self.store.upgrades.get_upgrade(room.room_id)
        if record is not None and record.new_room_id == replacement:
            answer.update(version=record.new_version, upgrader=record.upgrader)
            answer["upgraded_at"] = record.ts
            return answer
        # Upgraded elsewhere (a client's tombstone, or another server): what we know of it.
        new_room = await self.store.rooms.get_room(replacement)
        if new_room is not None:
            answer["version"] = new_room.room_version
        tombstoned = [t.ts for t in transitions if t.to_status == RoomStatus.TOMBSTONED]
        if tombstoned:
            answer["upgraded_at"] = tombstoned[-1]
        return answer

    async def stuck_upgrades(self, failures_limit: int) -> dict[str, Any]:
        """``GET /_homeserver/admin/v1/upgrades/stuck``: rooms ``upgrading`` now, and the newest
        ``failures_limit`` recorded failures."""
        now = self.clock()
        audit = self.store.upgrade_audit
        stuck = []
        for row in await audit.get_stuck_upgrades():
            expires, since = row.lock_expires_ts, row.since_ts
            stuck.append(
                {
                    "room_id": row.room_id,
                    "room_version": row.room_version,
                    "lock_holder": row.lock_holder,
                    "lock_expires_ts": expires,
                    # An expired lease is recovered by the next upgrade request or a restart.
                    "lock_expired": expires is None or expires < now,
                    "upgrading_since_ts": since,
                    "upgrading_for_ms": None if since is None else max(0, now - since),
                    "reason": row.reason,
                }
            )
        failed = [
            {"room_id": f.room_id, "reason": f.reason, "ts": f.ts}
            for f in await audit.get_recent_failures(failures_limit)
        ]
        return {"stuck": stuck, "failed": failed, "total_failed": await audit.count_failures()}
