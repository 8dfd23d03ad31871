"""Reads and repairs behind the admin API's room tools: forward extremities (list, and the
repair that keeps only the newest), the event nearest a timestamp, and each room's size.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction

#: the events a client may be pointed at: the room's timeline (as storage/room_use.py).
_TIMELINE = "outlier = FALSE AND rejected_reason IS NULL AND soft_failed = FALSE"


@dataclass(frozen=True, slots=True)
class Extremity:
    event_id: str
    state_group: int | None
    depth: int
    #: when we stored it is not kept; the event's own origin_server_ts stands in (ms).
    received_ts: int


class AdminRoomOpsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_forward_extremities(self, room_id: str) -> list[Extremity]:
        rows = await self.db.fetchall(
            "SELECT f.event_id, g.state_group_after, e.topological_ordering, e.origin_server_ts"
            " FROM event_forward_extremities f JOIN events e ON e.event_id = f.event_id"
            " LEFT JOIN event_to_state_groups g ON g.event_id = f.event_id"
            " WHERE f.room_id = ? ORDER BY e.stream_ordering",
            room_id,
        )
        return [
            Extremity(r[0], None if r[1] is None else int(r[1]), int(r[2]), int(r[3])) for r in rows
        ]

    async def delete_forward_extremities(self, room_id: str) -> int:
        """Keep only the room's newest forward extremity (Synapse's repair of a room whose
        extremities piled up); the number deleted. Under the room's lock, as persistence."""
        return await self.db.run_in_transaction(
            "delete_forward_extremities", self._delete_extremities_txn, room_id
        )

    async def _delete_extremities_txn(self, txn: Transaction, room_id: str) -> int:
        await txn.lock_row("rooms", "room_id", room_id)
        rows = await txn.fetchall(
            "SELECT f.event_id FROM event_forward_extremities f"
            " JOIN events e ON e.event_id = f.event_id WHERE f.room_id = ?"
            " ORDER BY e.stream_ordering DESC",
            room_id,
        )
        deleted = 0
        for (event_id,) in rows[1:]:
            deleted += await txn.execute(
                "DELETE FROM event_forward_extremities WHERE room_id = ? AND event_id = ?",
                room_id,
                event_id,
            )
        return deleted

    async def events_near_timestamp(
        self, room_id: str, ts: int, *, forwards: bool, limit: int
    ) -> list[str]:
        """Up to ``limit`` timeline events of the room at or after ``ts`` (``forwards``), else
        at or before it, nearest first."""
        if forwards:
            where, order = "origin_server_ts >= ?", "origin_server_ts ASC, stream_ordering ASC"
        else:
            where, order = "origin_server_ts <= ?", "origin_server_ts DESC, stream_ordering DESC"
        rows = await self.db.fetchall(
            f"SELECT event_id FROM events WHERE room_id = ? AND {where} AND {_TIMELINE}"
            f" ORDER BY {order} LIMIT ?",
            room_id,
            ts,
            limit,
        )
        return [r[0] for r in rows]

    async def room_sizes(self) -> list[tuple[str, int]]:
        """(room, estimated bytes) for every room, largest first: the JSON of its events (the
        bulk of a room's rows; Synapse reports the PostgreSQL size of its events)."""
        rows = await self.db.fetchall(
            "SELECT r.room_id, COALESCE(SUM(LENGTH(e.json)), 0) FROM rooms r"
            " LEFT JOIN events e ON e.room_id = r.room_id GROUP BY r.room_id"
        )
        sizes = [(r[0], int(r[1])) for r in rows]
        sizes.sort(key=lambda item: (-item[1], item[0]))
        return sizes

    # --- blocks (the rows storage/room_deletions.py writes when a deletion blocks) ----------
    async def get_block(self, room_id: str) -> str | None:
        """Who blocked the room, or None when it is not blocked."""
        return await self.db.fetchval(
            "SELECT user_id FROM blocked_rooms WHERE room_id = ?", room_id
        )

    async def set_block(self, room_id: str, user_id: str, blocked: bool, now: int) -> None:
        async with self.db.transaction("set_room_block") as txn:
            if blocked:
                await txn.execute(
                    "INSERT INTO blocked_rooms (room_id, user_id, blocked_ts) VALUES (?, ?, ?)"
                    " ON CONFLICT (room_id) DO NOTHING",
                    room_id,
                    user_id,
                    now,
                )
            else:
                await txn.execute("DELETE FROM blocked_rooms WHERE room_id = ?", room_id)

    # --- rooms two users share (server notices) ---------------------------------------------
    async def shared_rooms(
        self, joined_user: str, other_user: str, other_memberships: tuple[str, ...]
    ) -> list[str]:
        """Rooms where ``joined_user`` is joined and ``other_user``'s membership is one of
        ``other_memberships``, oldest first."""
        marks = ", ".join("?" for _ in other_memberships)
        rows = await self.db.fetchall(
            "SELECT a.room_id FROM current_state_events a"
            " JOIN current_state_events b ON b.room_id = a.room_id"
            " JOIN rooms r ON r.room_id = a.room_id"
            " WHERE a.type = 'm.room.member' AND a.state_key = ? AND a.membership = 'join'"
            f" AND b.type = 'm.room.member' AND b.state_key = ? AND b.membership IN ({marks})"
            " ORDER BY r.created_ts, a.room_id",
            joined_user,
            other_user,
            *other_memberships,
        )
        return [r[0] for r in rows]
