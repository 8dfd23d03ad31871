"""Local room aliases."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction


@dataclass(frozen=True, slots=True)
class AliasRecord:
    room_alias: str
    room_id: str
    creator: str | None
    created_ts: int


class AliasesStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_alias_txn(
        self, txn: Transaction, room_alias: str, room_id: str, creator: str | None, created_ts: int
    ) -> bool:
        """Claim ``room_alias`` for ``room_id``; False if it is taken."""
        changed = await txn.execute(
            "INSERT INTO room_aliases (room_alias, room_id, creator, created_ts)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (room_alias) DO NOTHING",
            room_alias,
            room_id,
            creator,
            created_ts,
        )
        return changed == 1

    async def create_alias(
        self, room_alias: str, room_id: str, creator: str | None, created_ts: int
    ) -> bool:
        async with self.db.transaction("create_alias") as txn:
            return await self.create_alias_txn(txn, room_alias, room_id, creator, created_ts)

    async def get_alias(self, room_alias: str) -> AliasRecord | None:
        row = await self.db.fetchone(
            "SELECT room_alias, room_id, creator, created_ts FROM room_aliases"
            " WHERE room_alias = ?",
            room_alias,
        )
        return None if row is None else AliasRecord(row[0], row[1], row[2], int(row[3]))

    async def get_aliases_for_room(self, room_id: str) -> list[str]:
        rows = await self.db.indexed.fetchall(
            "SELECT room_alias FROM room_aliases WHERE room_id = ? ORDER BY room_alias", room_id
        )
        return [r[0] for r in rows]

    async def delete_alias_txn(self, txn: Transaction, room_alias: str) -> bool:
        return await txn.execute("DELETE FROM room_aliases WHERE room_alias = ?", room_alias) == 1

    async def delete_alias(self, room_alias: str) -> bool:
        async with self.db.transaction("delete_alias") as txn:
            return await self.delete_alias_txn(txn, room_alias)

    async def move_aliases_txn(self, txn: Transaction, old_room_id: str, new_room_id: str) -> int:
        """Point every alias of ``old_room_id`` at ``new_room_id`` (room upgrade)."""
        return await txn.execute(
            "UPDATE room_aliases SET room_id = ? WHERE room_id = ?", new_room_id, old_room_id
        )
