"""Remote users' device lists as their servers described them: each device's entry (keys and
display name, as in ``GET /_matrix/federation/v1/user/devices``), the ``stream_id`` that
description is at, and whether a gap in the updates made it stale (then it must be fetched
again before it answers anything)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from homeserver.crypto.canonical_json import canonical_json_text, parse_json
from homeserver.storage.database import Database, Transaction


@dataclass(frozen=True, slots=True)
class RemoteDeviceList:
    user_id: str
    stream_id: int
    stale: bool
    devices: dict[str, dict[str, Any]]


class RemoteDeviceListsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, user_id: str) -> RemoteDeviceList | None:
        row = await self.db.fetchone(
            "SELECT stream_id, stale FROM remote_device_list_positions WHERE user_id = ?",
            user_id,
        )
        if row is None:
            return None
        rows = await self.db.fetchall(
            "SELECT device_id, content FROM remote_device_lists WHERE user_id = ?", user_id
        )
        return RemoteDeviceList(
            user_id, int(row[0]), bool(row[1]), {r[0]: parse_json(r[1]) for r in rows}
        )

    async def replace(
        self,
        user_id: str,
        stream_id: int,
        devices: Mapping[str, dict[str, Any]],
        cross_signing: Mapping[str, dict[str, Any]],
    ) -> None:
        """A full resync: the user's devices and cross-signing keys as of ``stream_id``."""
        async with self.db.transaction("replace_remote_device_list") as txn:
            await self.replace_txn(txn, user_id, stream_id, devices, cross_signing)

    async def changes(self, user_id: str) -> int | None:
        """How many times the user's position changed (None: not tracked); a resync compares
        it before and after asking the user's server."""
        value = await self.db.fetchval(
            "SELECT changes FROM remote_device_list_positions WHERE user_id = ?", user_id
        )
        return None if value is None else int(value)

    async def changes_txn(self, txn: Transaction, user_id: str) -> int | None:
        value = await txn.fetchval(
            "SELECT changes FROM remote_device_list_positions WHERE user_id = ?", user_id
        )
        return None if value is None else int(value)

    async def devices_txn(self, txn: Transaction, user_id: str) -> dict[str, dict[str, Any]]:
        rows = await txn.fetchall(
            "SELECT device_id, content FROM remote_device_lists WHERE user_id = ?", user_id
        )
        return {r[0]: parse_json(r[1]) for r in rows}

    async def replace_txn(
        self,
        txn: Transaction,
        user_id: str,
        stream_id: int,
        devices: Mapping[str, dict[str, Any]],
        cross_signing: Mapping[str, dict[str, Any]],
    ) -> None:
        """:meth:`replace` inside the caller's transaction."""
        await txn.execute("DELETE FROM remote_device_lists WHERE user_id = ?", user_id)
        await txn.executemany(
            "INSERT INTO remote_device_lists (user_id, device_id, content) VALUES (?, ?, ?)",
            [(user_id, d, canonical_json_text(c)) for d, c in devices.items()],
        )
        for key_type, key in cross_signing.items():
            await txn.execute(
                "INSERT INTO e2e_cross_signing_keys (user_id, key_type, key_json, stream_id)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (user_id, key_type) DO UPDATE SET"
                " key_json = excluded.key_json, stream_id = excluded.stream_id",
                user_id,
                key_type,
                canonical_json_text(key),
                stream_id,
            )
        await self._set_position_txn(txn, user_id, stream_id, stale=False)

    async def update_device_txn(
        self,
        txn: Transaction,
        user_id: str,
        device_id: str,
        content: dict[str, Any] | None,
        stream_id: int,
    ) -> None:
        """One device changed (``content`` None: deleted), bringing the list to ``stream_id``."""
        if content is None:
            await txn.execute(
                "DELETE FROM remote_device_lists WHERE user_id = ? AND device_id = ?",
                user_id,
                device_id,
            )
        else:
            await txn.execute(
                "INSERT INTO remote_device_lists (user_id, device_id, content) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id, device_id) DO UPDATE SET content = excluded.content",
                user_id,
                device_id,
                canonical_json_text(content),
            )
        await self._set_position_txn(txn, user_id, stream_id, stale=False)

    async def _set_position_txn(
        self, txn: Transaction, user_id: str, stream_id: int, *, stale: bool
    ) -> None:
        await txn.execute(
            "INSERT INTO remote_device_list_positions (user_id, stream_id, stale) VALUES (?, ?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id,"
            " stale = excluded.stale,"
            " changes = remote_device_list_positions.changes + 1",
            user_id,
            stream_id,
            stale,
        )

    async def mark_stale(self, user_id: str) -> None:
        async with self.db.transaction("mark_remote_device_list_stale") as txn:
            await self.mark_stale_txn(txn, user_id)

    async def mark_stale_txn(self, txn: Transaction, user_id: str) -> None:
        await txn.execute(
            "INSERT INTO remote_device_list_positions (user_id, stream_id, stale)"
            " VALUES (?, 0, TRUE) ON CONFLICT (user_id) DO UPDATE SET stale = TRUE,"
            " changes = remote_device_list_positions.changes + 1",
            user_id,
        )

    async def get_position_txn(self, txn: Transaction, user_id: str) -> int | None:
        """The stream_id held for ``user_id`` if tracked and not stale."""
        row = await txn.fetchone(
            "SELECT stream_id, stale FROM remote_device_list_positions WHERE user_id = ?",
            user_id,
        )
        if row is None or row[1]:
            return None
        return int(row[0])

    async def forget(self, user_id: str) -> None:
        """Stop tracking ``user_id`` (no local user shares a room with them any more)."""
        async with self.db.transaction("forget_remote_device_list") as txn:
            await txn.execute("DELETE FROM remote_device_lists WHERE user_id = ?", user_id)
            await txn.execute("DELETE FROM remote_device_list_positions WHERE user_id = ?", user_id)
