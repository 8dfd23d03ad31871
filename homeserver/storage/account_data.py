"""Account data: per-user JSON objects, global (``room_id`` ``''``) or per room (tags live here
as ``m.tag``, the fully-read marker as ``m.fully_read``). Every write takes a position on the
account_data stream so /sync can send only what changed since a token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from homeserver.crypto.canonical_json import canonical_json_text, parse_json
from homeserver.storage.database import Database, Transaction
from homeserver.storage.streams import ACCOUNT_DATA_STREAM, advance_stream_txn, get_stream_position

#: ``room_id`` of global account data.
GLOBAL = ""


def _content(text: str) -> dict[str, Any]:
    value = parse_json(text)
    return value if isinstance(value, dict) else {}


@dataclass(slots=True)
class AccountDataChanges:
    """Account data of one user: global ``type → content`` and ``room_id → type → content``."""

    global_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    rooms: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


class AccountDataStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_position(self) -> int:
        return await get_stream_position(self.db, ACCOUNT_DATA_STREAM)

    async def set_account_data_txn(
        self, txn: Transaction, user_id: str, room_id: str, data_type: str, content: dict[str, Any]
    ) -> int:
        """Write one entry inside the caller's transaction (e.g. an upgrade copying tags);
        returns its stream position."""
        stream_id = await advance_stream_txn(txn, ACCOUNT_DATA_STREAM, order_key=user_id)
        await self._upsert_txn(txn, user_id, room_id, data_type, content, stream_id)
        return stream_id

    async def _upsert_txn(
        self,
        txn: Transaction,
        user_id: str,
        room_id: str,
        data_type: str,
        content: dict[str, Any],
        stream_id: int,
    ) -> None:
        await txn.execute(
            "INSERT INTO account_data (user_id, room_id, type, content, stream_id)"
            " VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (user_id, room_id, type)"
            " DO UPDATE SET content = excluded.content, stream_id = excluded.stream_id",
            user_id,
            room_id,
            data_type,
            canonical_json_text(content),
            stream_id,
        )

    async def set_account_data(
        self, user_id: str, room_id: str, data_type: str, content: dict[str, Any]
    ) -> int:
        return await self.db.run_in_transaction(
            "set_account_data",
            self.set_account_data_txn,
            user_id,
            room_id,
            data_type,
            content,
        )

    async def update_account_data(
        self,
        user_id: str,
        room_id: str,
        data_type: str,
        change: Callable[[dict[str, Any] | None], dict[str, Any]],
    ) -> dict[str, Any]:
        """Read-modify-write one entry (tags): ``change(old or None)`` gives the new content.

        The stream position is taken first, ordered by the user (an advisory lock on
        PostgreSQL, SQLite's single writer): concurrent updates of one user's data run one
        after the other, so none is lost."""

        async def run(txn: Transaction) -> dict[str, Any]:
            stream_id = await advance_stream_txn(txn, ACCOUNT_DATA_STREAM, order_key=user_id)
            text = await txn.fetchval(
                "SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND type = ?",
                user_id,
                room_id,
                data_type,
            )
            content = change(None if text is None else _content(text))
            await self._upsert_txn(txn, user_id, room_id, data_type, content, stream_id)
            return content

        return await self.db.run_in_transaction("update_account_data", run)

    async def get_account_data(
        self, user_id: str, room_id: str, data_type: str
    ) -> dict[str, Any] | None:
        text = await self.db.fetchval(
            "SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND type = ?",
            user_id,
            room_id,
            data_type,
        )
        return None if text is None else _content(text)

    async def get_changes(self, user_id: str, after: int | None, upto: int) -> AccountDataChanges:
        """Entries written in ``(after, upto]`` (``after`` None: everything up to ``upto``)."""
        rows = await self.db.fetchall(
            "SELECT room_id, type, content FROM account_data"
            " WHERE user_id = ? AND stream_id > ? AND stream_id <= ? ORDER BY stream_id",
            user_id,
            -1 if after is None else after,
            upto,
        )
        changes = AccountDataChanges()
        for room_id, data_type, text in rows:
            if room_id == GLOBAL:
                changes.global_data[data_type] = _content(text)
            else:
                changes.rooms.setdefault(room_id, {})[data_type] = _content(text)
        return changes

    # --- when push rules changed (they are sent as m.push_rules account data) ----------
    async def touch_push_rules_txn(self, txn: Transaction, user_id: str) -> int:
        stream_id = await advance_stream_txn(txn, ACCOUNT_DATA_STREAM, order_key=user_id)
        await txn.execute(
            "INSERT INTO push_rules_stream (user_id, stream_id) VALUES (?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id",
            user_id,
            stream_id,
        )
        return stream_id

    async def get_push_rules_position(self, user_id: str) -> int:
        """The account_data position of the user's last push-rule change (0: never)."""
        value = await self.db.fetchval(
            "SELECT stream_id FROM push_rules_stream WHERE user_id = ?", user_id
        )
        return int(value or 0)
