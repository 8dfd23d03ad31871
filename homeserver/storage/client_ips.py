"""Where sessions are used from (Synapse's ``user_ips``, migration 031): rows written in batches
by ``accounts/client_ips.py``, the devices' last-seen columns kept with them, and the sweep of
rows older than ``user_ips_max_age``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction


@dataclass(frozen=True, slots=True)
class ClientIpEntry:
    user_id: str
    token_hash: str
    device_id: str | None
    ip: str
    user_agent: str
    last_seen: int


class ClientIpsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, entries: Sequence[ClientIpEntry]) -> None:
        """One transaction for a whole batch (each entry the latest use of its key).

        Every process writes the same tokens' rows (any request may reach any process), so the
        batch locks them in one global order, table by table: two processes flushing at once
        then queue behind each other instead of deadlocking, and a deadlock that still happens
        (with another writer of ``devices``) is retried."""
        if entries:
            await self.db.run_in_transaction("record_client_ips", self._record_txn, entries)

    @staticmethod
    async def _record_txn(txn: Transaction, entries: Sequence[ClientIpEntry]) -> None:
        for e in sorted(entries, key=lambda e: (e.token_hash, e.ip, e.user_agent)):
            await txn.execute(
                "INSERT INTO user_ips (user_id, token_hash, device_id, ip, user_agent,"
                " last_seen) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (token_hash, ip, user_agent) DO UPDATE"
                " SET last_seen = excluded.last_seen"
                " WHERE user_ips.last_seen < excluded.last_seen",
                e.user_id,
                e.token_hash,
                e.device_id,
                e.ip,
                e.user_agent,
                e.last_seen,
            )
        # A device's (and a token's) newest use in the batch is the one that counts.
        newest_per_device: dict[tuple[str, str], ClientIpEntry] = {}
        newest_per_token: dict[str, ClientIpEntry] = {}
        for e in entries:
            if e.device_id is not None:
                key = (e.user_id, e.device_id)
                seen = newest_per_device.get(key)
                if seen is None or seen.last_seen < e.last_seen:
                    newest_per_device[key] = e
            seen = newest_per_token.get(e.token_hash)
            if seen is None or seen.last_seen < e.last_seen:
                newest_per_token[e.token_hash] = e
        for (user_id, device_id), e in sorted(newest_per_device.items()):
            await txn.execute(
                "UPDATE devices SET last_seen_ts = ?, last_seen_ip = ?,"
                " last_seen_user_agent = ? WHERE user_id = ? AND device_id = ?"
                " AND (last_seen_ts IS NULL OR last_seen_ts <= ?)",
                e.last_seen,
                e.ip,
                e.user_agent,
                user_id,
                device_id,
                e.last_seen,
            )
        for token_hash, e in sorted(newest_per_token.items()):
            await txn.execute(
                "UPDATE access_tokens SET last_used = ? WHERE token_hash = ?"
                " AND (last_used IS NULL OR last_used < ?)",
                e.last_seen,
                token_hash,
                e.last_seen,
            )

    async def sweep(self, before_ts: int) -> int:
        """Forget uses older than ``before_ts``; how many rows went."""

        async def run(txn: Transaction) -> int:
            return await txn.execute("DELETE FROM user_ips WHERE last_seen < ?", before_ts)

        # Retried: the DELETE takes its rows in no set order and a flush in key order, so old
        # rows used again meanwhile can deadlock the two.
        return await self.db.run_in_transaction("sweep_client_ips", run)

    async def connections(self, user_id: str) -> list[ClientIpEntry]:
        rows = await self.db.fetchall(
            "SELECT user_id, token_hash, device_id, ip, user_agent, last_seen FROM user_ips"
            " WHERE user_id = ? ORDER BY device_id, token_hash, last_seen",
            user_id,
        )
        return [ClientIpEntry(r[0], r[1], r[2], r[3], r[4], int(r[5])) for r in rows]
