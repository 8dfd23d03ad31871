"""Blocked rooms and the records of admin room deletions (``DELETE /_synapse/admin/v2/rooms``).

Both outlive the room they name: a purge removes the room's data but keeps its block and the
status of the deletion that purged it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.crypto.canonical_json import canonical_json_text, parse_json
from homeserver.storage.database import Database

#: Synapse's task statuses; the first two are "not finished".
DELETION_STATUSES = ("scheduled", "active", "complete", "failed")
UNFINISHED = ("scheduled", "active")

_COLUMNS = "delete_id, room_id, status, params, result, error, created_ts, updated_ts"


@dataclass(frozen=True, slots=True)
class DeletionRecord:
    delete_id: str
    room_id: str
    status: str
    params: dict[str, Any]
    #: Synapse's ``shutdown_room`` object.
    result: dict[str, Any]
    error: str | None
    created_ts: int
    updated_ts: int


def _record(row: tuple[Any, ...]) -> DeletionRecord:
    return DeletionRecord(
        row[0],
        row[1],
        row[2],
        parse_json(row[3]),
        parse_json(row[4]),
        row[5],
        int(row[6]),
        int(row[7]),
    )


class RoomDeletionsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- blocks ----------------------------------------------------------------------------
    async def block_room(self, room_id: str, user_id: str, now: int) -> None:
        async with self.db.transaction("block_room") as txn:
            await txn.execute(
                "INSERT INTO blocked_rooms (room_id, user_id, blocked_ts) VALUES (?, ?, ?)"
                " ON CONFLICT (room_id) DO NOTHING",
                room_id,
                user_id,
                now,
            )

    async def is_blocked(self, room_id: str) -> bool:
        return bool(
            await self.db.fetchval("SELECT 1 FROM blocked_rooms WHERE room_id = ?", room_id)
        )

    # --- deletion records --------------------------------------------------------------------
    async def add(
        self,
        delete_id: str,
        room_id: str,
        params: dict[str, Any],
        result: dict[str, Any],
        now: int,
    ) -> bool:
        """Record a scheduled deletion; False (nothing written) if one of ``room_id`` is
        unfinished, so two deletions of a room never run together (across processes too)."""
        async with self.db.transaction("add_room_deletion") as txn:
            await txn.lock_row("rooms", "room_id", room_id)
            busy = await txn.fetchval(
                "SELECT 1 FROM room_deletions WHERE room_id = ?"
                " AND status IN ('scheduled', 'active')",
                room_id,
            )
            if busy:
                return False
            await txn.execute(
                f"INSERT INTO room_deletions ({_COLUMNS})"
                " VALUES (?, ?, 'scheduled', ?, ?, NULL, ?, ?)",
                delete_id,
                room_id,
                canonical_json_text(params),
                canonical_json_text(result),
                now,
                now,
            )
        return True

    async def update(
        self,
        delete_id: str,
        *,
        status: str,
        result: dict[str, Any],
        now: int,
        error: str | None = None,
    ) -> None:
        if status not in DELETION_STATUSES:
            raise ValueError(f"unknown deletion status {status!r}")
        async with self.db.transaction("update_room_deletion") as txn:
            await txn.execute(
                "UPDATE room_deletions SET status = ?, result = ?, error = ?, updated_ts = ?"
                " WHERE delete_id = ?",
                status,
                canonical_json_text(result),
                error,
                now,
                delete_id,
            )

    async def get(self, delete_id: str) -> DeletionRecord | None:
        row = await self.db.fetchone(
            f"SELECT {_COLUMNS} FROM room_deletions WHERE delete_id = ?", delete_id
        )
        return None if row is None else _record(row)

    async def get_for_room(self, room_id: str) -> list[DeletionRecord]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM room_deletions WHERE room_id = ?"
            " ORDER BY created_ts, delete_id",
            room_id,
        )
        return [_record(r) for r in rows]

    async def get_unfinished(self) -> list[DeletionRecord]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM room_deletions WHERE status IN ('scheduled', 'active')"
            " ORDER BY created_ts, delete_id"
        )
        return [_record(r) for r in rows]

    async def get_all(self) -> list[DeletionRecord]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM room_deletions ORDER BY created_ts, delete_id"
        )
        return [_record(r) for r in rows]
