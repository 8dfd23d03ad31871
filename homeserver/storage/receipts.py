"""Receipts: the latest receipt per (room, receipt type, user, thread), stamped with a position
on the receipts stream so /sync sends only the ones that moved since a token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction, placeholders
from homeserver.storage.streams import RECEIPTS_STREAM, advance_stream_txn, get_stream_position

#: ``thread_id`` column value of an unthreaded receipt.
UNTHREADED = ""
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Receipt:
    room_id: str
    receipt_type: str
    user_id: str
    thread_id: str | None
    event_id: str
    ts: int


class ReceiptsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_position(self) -> int:
        return await get_stream_position(self.db, RECEIPTS_STREAM)

    async def upsert_receipt(self, receipt: Receipt) -> int:
        """Store ``receipt`` in place of the previous one for its key; returns its position."""
        async with self.db.transaction("upsert_receipt") as txn:
            return await self.upsert_receipt_txn(txn, receipt)

    async def upsert_receipt_txn(self, txn: Transaction, receipt: Receipt) -> int:
        """:meth:`upsert_receipt` inside the caller's transaction (which may queue the
        receipt's EDU for other servers beside it)."""
        stream_id = await advance_stream_txn(
            txn, RECEIPTS_STREAM, order_key=f"{receipt.room_id}\0{receipt.user_id}"
        )
        await txn.execute(
            "INSERT INTO receipts"
            " (room_id, receipt_type, user_id, thread_id, event_id, ts, stream_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET"
            " event_id = excluded.event_id, ts = excluded.ts, stream_id = excluded.stream_id",
            receipt.room_id,
            receipt.receipt_type,
            receipt.user_id,
            receipt.thread_id or UNTHREADED,
            receipt.event_id,
            receipt.ts,
            stream_id,
        )
        return stream_id

    async def get_receipts(
        self, room_ids: Sequence[str], after: int | None, upto: int
    ) -> list[Receipt]:
        """Receipts in ``room_ids`` stamped in ``(after, upto]`` (``after`` None: all)."""
        found: list[Receipt] = []
        ids = list(dict.fromkeys(room_ids))
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            rows = await self.db.fetchall(
                "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts FROM receipts"
                f" WHERE room_id IN ({placeholders(len(chunk))})"
                " AND stream_id > ? AND stream_id <= ? ORDER BY stream_id",
                *chunk,
                -1 if after is None else after,
                upto,
            )
            found.extend(Receipt(r[0], r[1], r[2], r[3] or None, r[4], int(r[5])) for r in rows)
        return found
