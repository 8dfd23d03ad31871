"""Storage for receiving events over federation: the answers to received transactions (so a
retried ``/send`` gets the same answer, across restarts) and room facts gap filling asks for."""

from __future__ import annotations

from typing import Any

from homeserver.crypto.canonical_json import canonical_json_text, parse_json
from homeserver.storage.database import Database


class FederationInboundStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_transaction_response(self, origin: str, txn_id: str) -> Any | None:
        """The answer stored for ``(origin, txn_id)``, or None."""
        text = await self.db.fetchval(
            "SELECT response_json FROM federation_received_transactions"
            " WHERE origin = ? AND txn_id = ?",
            origin,
            txn_id,
        )
        return None if text is None else parse_json(text)

    async def store_transaction_response(
        self, origin: str, txn_id: str, response: Any, ts: int
    ) -> None:
        """Remember the answer (the first one stored wins)."""
        async with self.db.transaction("store_received_transaction") as txn:
            await txn.execute(
                "INSERT INTO federation_received_transactions"
                " (origin, txn_id, response_json, received_ts) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (origin, txn_id) DO NOTHING",
                origin,
                txn_id,
                canonical_json_text(response),
                ts,
            )

    async def prune_transactions(self, before_ts: int) -> int:
        """Forget answers received before ``before_ts``; returns how many."""
        async with self.db.transaction("prune_received_transactions") as txn:
            count = await txn.fetchval(
                "SELECT COUNT(*) FROM federation_received_transactions WHERE received_ts < ?",
                before_ts,
            )
            await txn.execute(
                "DELETE FROM federation_received_transactions WHERE received_ts < ?", before_ts
            )
        return int(count or 0)

    async def get_min_depth(self, room_id: str) -> int:
        """The smallest depth among the room's non-outlier events (0 if none): how far back
        a gap may be filled from (``min_depth`` of ``get_missing_events``)."""
        value = await self.db.fetchval(
            "SELECT MIN(topological_ordering) FROM events WHERE room_id = ? AND outlier = FALSE",
            room_id,
        )
        return 0 if value is None else int(value)
