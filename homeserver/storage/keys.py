"""Remote servers' verify keys, as fetched by the keyring."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from homeserver.storage.database import Database, placeholders


@dataclass(frozen=True, slots=True)
class ServerKey:
    server_name: str
    key_id: str
    #: the raw 32-byte ed25519 verify key.
    verify_key: bytes
    valid_until_ts: int
    fetched_ts: int


class KeysStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def store_server_keys(self, keys: Iterable[ServerKey]) -> None:
        """Insert or refresh keys. A refetch never shortens a key's validity: a stale response
        (replayed or from a notary with old data) must not make valid signatures fail.

        Written in key order: two processes storing the same keys from differently ordered
        answers then queue instead of deadlocking."""
        rows = [
            (k.server_name, k.key_id, bytes(k.verify_key), k.valid_until_ts, k.fetched_ts)
            for k in sorted(keys, key=lambda k: (k.server_name, k.key_id))
        ]
        if not rows:
            return
        async with self.db.transaction("store_server_keys") as txn:
            await txn.executemany(
                "INSERT INTO server_keys (server_name, key_id, verify_key, valid_until_ts,"
                " fetched_ts) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (server_name, key_id) DO UPDATE SET"
                " verify_key = excluded.verify_key,"
                " valid_until_ts = CASE WHEN excluded.valid_until_ts > server_keys.valid_until_ts"
                " THEN excluded.valid_until_ts ELSE server_keys.valid_until_ts END,"
                " fetched_ts = excluded.fetched_ts",
                rows,
            )

    async def get_server_keys(
        self, server_name: str, key_ids: Iterable[str] | None = None
    ) -> dict[str, ServerKey]:
        """``key_id → key`` for ``server_name`` (all its keys, or those among ``key_ids``)."""
        sql = (
            "SELECT server_name, key_id, verify_key, valid_until_ts, fetched_ts FROM server_keys"
            " WHERE server_name = ?"
        )
        args: list[object] = [server_name]
        if key_ids is not None:
            wanted = list(set(key_ids))
            if not wanted:
                return {}
            sql += f" AND key_id IN ({placeholders(len(wanted))})"
            args.extend(wanted)
        rows = await self.db.fetchall(sql, *args)
        return {r[1]: ServerKey(r[0], r[1], bytes(r[2]), int(r[3]), int(r[4])) for r in rows}
