"""The federation outbox: work for other servers, written in the same transaction as the event
that causes it, delivered by the federation sender with backoff (DESIGN.md §4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.crypto.canonical_json import canonical_json_text, parse_json
from homeserver.storage.database import Database, Transaction, placeholders


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    destination: str
    payload: Any
    created_ts: int
    attempts: int
    next_attempt_ts: int


class OutboxStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def enqueue_txn(
        self, txn: Transaction, destination: str, payload: Any, *, now: int
    ) -> int:
        return int(
            await txn.fetchval(
                "INSERT INTO federation_outbox (destination, payload, created_ts, next_attempt_ts)"
                " VALUES (?, ?, ?, ?) RETURNING id",
                destination,
                canonical_json_text(payload),
                now,
                now,
            )
        )

    async def get_due(self, now: int, limit: int = 100) -> list[OutboxEntry]:
        """Entries whose next attempt is due, oldest first."""
        rows = await self.db.fetchall(
            "SELECT id, destination, payload, created_ts, attempts, next_attempt_ts"
            " FROM federation_outbox WHERE next_attempt_ts <= ? ORDER BY id LIMIT ?",
            now,
            limit,
        )
        return [
            OutboxEntry(int(r[0]), r[1], parse_json(r[2]), int(r[3]), int(r[4]), int(r[5]))
            for r in rows
        ]

    async def delete(self, ids: list[int]) -> None:
        """Delivered: forget the entries."""
        if not ids:
            return
        async with self.db.transaction("outbox_delete") as txn:
            await txn.execute(
                f"DELETE FROM federation_outbox WHERE id IN ({placeholders(len(ids))})", *ids
            )

    async def reschedule(self, ids: list[int], next_attempt_ts: int) -> None:
        """A failed attempt: count it and wait until ``next_attempt_ts``."""
        if not ids:
            return
        async with self.db.transaction("outbox_reschedule") as txn:
            await txn.execute(
                "UPDATE federation_outbox SET attempts = attempts + 1, next_attempt_ts = ?"
                f" WHERE id IN ({placeholders(len(ids))})",
                next_attempt_ts,
                *ids,
            )
