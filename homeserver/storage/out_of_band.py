"""Out-of-band memberships: a local user's invite to (or rejection of) a room this server is not
in. The event is an outlier; the row here says which one is the user's latest and at which
events-stream position, for /sync (migration 010)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction, placeholders


@dataclass(frozen=True, slots=True)
class OutOfBandMembership:
    user_id: str
    room_id: str
    event_id: str
    membership: str
    room_version: str
    stream_ordering: int


_COLUMNS = "user_id, room_id, event_id, membership, room_version, stream_ordering"


def _row(row: tuple) -> OutOfBandMembership:
    return OutOfBandMembership(row[0], row[1], row[2], row[3], row[4], int(row[5]))


class OutOfBandStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def upsert_txn(self, txn: Transaction, membership: OutOfBandMembership) -> None:
        """Record the user's latest out-of-band membership event in the room."""
        await txn.execute(
            f"INSERT INTO out_of_band_memberships ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (user_id, room_id) DO UPDATE SET event_id = excluded.event_id,"
            " membership = excluded.membership, room_version = excluded.room_version,"
            " stream_ordering = excluded.stream_ordering",
            membership.user_id,
            membership.room_id,
            membership.event_id,
            membership.membership,
            membership.room_version,
            membership.stream_ordering,
        )

    async def delete_txn(self, txn: Transaction, user_id: str, room_id: str) -> None:
        """The user's membership is now part of the room's own state (they joined it)."""
        await txn.execute(
            "DELETE FROM out_of_band_memberships WHERE user_id = ? AND room_id = ?",
            user_id,
            room_id,
        )

    async def get(self, user_id: str, room_id: str) -> OutOfBandMembership | None:
        row = await self.db.fetchone(
            f"SELECT {_COLUMNS} FROM out_of_band_memberships WHERE user_id = ? AND room_id = ?",
            user_id,
            room_id,
        )
        return None if row is None else _row(row)

    async def get_current(
        self, user_id: str, membership: str, upto: int
    ) -> list[OutOfBandMembership]:
        """The user's out-of-band memberships of one kind at or before position ``upto``."""
        return await self.get_current_of(user_id, (membership,), upto)

    async def get_current_of(
        self, user_id: str, memberships: Sequence[str], upto: int
    ) -> list[OutOfBandMembership]:
        """The user's out-of-band memberships of the kinds ``memberships`` at or before position
        ``upto``, in stream order (one read for /sync's invite and knock sections)."""
        if not memberships:
            return []
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM out_of_band_memberships"
            f" WHERE user_id = ? AND membership IN ({placeholders(len(memberships))})"
            " AND stream_ordering <= ? ORDER BY stream_ordering",
            user_id,
            *memberships,
            upto,
        )
        return [_row(r) for r in rows]

    async def get_changes(self, user_id: str, after: int, upto: int) -> list[OutOfBandMembership]:
        """The user's out-of-band memberships that changed in ``(after, upto]``."""
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM out_of_band_memberships"
            " WHERE user_id = ? AND stream_ordering > ? AND stream_ordering <= ?"
            " ORDER BY stream_ordering",
            user_id,
            after,
            upto,
        )
        return [_row(r) for r in rows]

    async def event_position_txn(self, txn: Transaction, event_id: str) -> int | None:
        """The stream position of a stored event (an out-of-band event stored before)."""
        value = await txn.fetchval(
            "SELECT stream_ordering FROM events WHERE event_id = ?", event_id
        )
        return None if value is None else int(value)
