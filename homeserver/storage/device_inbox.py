"""To-device messages waiting for local devices, and the IDs that make their delivery happen
once: the sender's transaction IDs (PUT /sendToDevice retried) and the message IDs of received
``m.direct_to_device`` EDUs (a federation transaction resent).

A message stays in the inbox until its device syncs with a token past it, which proves the
device received the response that carried it; a sync that is lost on the way is answered again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeserver.crypto.canonical_json import canonical_json_text, parse_json
from homeserver.storage.database import Database, Transaction
from homeserver.storage.streams import TO_DEVICE_STREAM, advance_stream_txn, get_stream_position


class DeviceInboxStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_position(self) -> int:
        return await get_stream_position(self.db, TO_DEVICE_STREAM)

    async def add_messages_txn(
        self, txn: Transaction, messages: Sequence[tuple[str, str, dict[str, Any]]]
    ) -> int:
        """Queue ``(user_id, device_id, message)`` (each device at most once per call) at one
        new position of the to-device stream, which is returned."""
        position = await advance_stream_txn(txn, TO_DEVICE_STREAM)
        await txn.executemany(
            "INSERT INTO device_inbox (stream_id, user_id, device_id, message_json)"
            " VALUES (?, ?, ?, ?)",
            [(position, u, d, canonical_json_text(m)) for u, d, m in messages],
        )
        return position

    async def get_messages(
        self, user_id: str, device_id: str, after: int, upto: int, limit: int
    ) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``limit`` messages for the device in ``(after, upto]``, oldest first."""
        rows = await self.db.fetchall(
            "SELECT stream_id, message_json FROM device_inbox"
            " WHERE user_id = ? AND device_id = ? AND stream_id > ? AND stream_id <= ?"
            " ORDER BY stream_id LIMIT ?",
            user_id,
            device_id,
            after,
            upto,
            limit,
        )
        return [(int(r[0]), parse_json(r[1])) for r in rows]

    async def delete_messages_upto(self, user_id: str, device_id: str, upto: int) -> int:
        """Drop the messages the device has acknowledged; returns how many."""
        async with self.db.transaction("delete_to_device_messages") as txn:
            return await txn.execute(
                "DELETE FROM device_inbox WHERE user_id = ? AND device_id = ? AND stream_id <= ?",
                user_id,
                device_id,
                upto,
            )

    async def record_txn_id_txn(
        self, txn: Transaction, user_id: str, device_id: str, txn_id: str, now: int
    ) -> bool:
        """False when this device already sent ``txn_id`` (nothing must be delivered again)."""
        inserted = await txn.execute(
            "INSERT INTO to_device_txns (user_id, device_id, txn_id, ts) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (user_id, device_id, txn_id) DO NOTHING",
            user_id,
            device_id,
            txn_id,
            now,
        )
        return inserted == 1

    async def record_received_message_txn(
        self, txn: Transaction, origin: str, message_id: str, now: int
    ) -> bool:
        """False when ``origin`` already delivered ``message_id``."""
        inserted = await txn.execute(
            "INSERT INTO received_to_device_messages (origin, message_id, ts) VALUES (?, ?, ?)"
            " ON CONFLICT (origin, message_id) DO NOTHING",
            origin,
            message_id,
            now,
        )
        return inserted == 1

    async def prune(self, older_than_ts: int) -> None:
        """Forget transaction and message IDs older than any retry could be."""
        async with self.db.transaction("prune_to_device_ids") as txn:
            await txn.execute("DELETE FROM to_device_txns WHERE ts < ?", older_than_ts)
            await txn.execute("DELETE FROM received_to_device_messages WHERE ts < ?", older_than_ts)
