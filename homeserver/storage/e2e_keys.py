"""Keys of local devices for end-to-end encryption: identity (device) keys, one-time keys,
fallback keys, cross-signing keys, and signatures uploaded for other keys.

Keys are kept as the client signed them (canonical JSON text), so what a querying device gets
back verifies against the same signatures. A one-time key leaves the table in the transaction
that claims it: two claims can never get the same key.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.crypto.canonical_json import canonical_json_text, parse_json
from homeserver.storage.database import Database, Transaction, placeholders

_CHUNK = 500


@dataclass(frozen=True, slots=True)
class DeviceKeys:
    keys: dict[str, Any]
    display_name: str | None


@dataclass(frozen=True, slots=True)
class Signature:
    signer_user_id: str
    signer_key_id: str
    target_user_id: str
    target_key_id: str
    signature: str


class E2EKeysStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- device keys ---------------------------------------------------------------------
    async def get_device_keys(
        self, query: Mapping[str, Collection[str]]
    ) -> dict[str, dict[str, DeviceKeys]]:
        """Keys of existing local devices: ``{user: [device, …]}`` (empty: all devices).

        Users asked for whole (the usual query: a room's members) are read a chunk of users per
        statement, not one statement each: on PostgreSQL the round trips were most of the cost."""
        select = (
            "SELECT k.user_id, k.device_id, k.key_json, d.display_name FROM e2e_device_keys k"
            " JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id"
        )
        rows: list[Any] = []
        whole = sorted(user_id for user_id, devices in query.items() if not devices)
        for start in range(0, len(whole), _CHUNK):
            chunk = whole[start : start + _CHUNK]
            rows.extend(
                await self.db.fetchall(
                    f"{select} WHERE k.user_id IN ({placeholders(len(chunk))})", *chunk
                )
            )
        for user_id, device_ids in query.items():
            wanted = sorted(set(device_ids))
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                rows.extend(
                    await self.db.fetchall(
                        f"{select} WHERE k.user_id = ?"
                        f" AND k.device_id IN ({placeholders(len(chunk))})",
                        user_id,
                        *chunk,
                    )
                )
        found: dict[str, dict[str, DeviceKeys]] = {}
        for user_id, device_id, key_json, display_name in rows:
            found.setdefault(user_id, {})[device_id] = DeviceKeys(
                parse_json(key_json), display_name
            )
        return found

    async def get_device_keys_txn(
        self, txn: Transaction, user_id: str, device_id: str
    ) -> dict[str, Any] | None:
        text = await txn.fetchval(
            "SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?",
            user_id,
            device_id,
        )
        return None if text is None else parse_json(text)

    async def set_device_keys_txn(
        self, txn: Transaction, user_id: str, device_id: str, keys: dict[str, Any], now: int
    ) -> None:
        await txn.execute(
            "INSERT INTO e2e_device_keys (user_id, device_id, key_json, ts) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json,"
            " ts = excluded.ts",
            user_id,
            device_id,
            canonical_json_text(keys),
            now,
        )

    # --- one-time keys -------------------------------------------------------------------
    async def get_one_time_keys_txn(
        self,
        txn: Transaction,
        user_id: str,
        device_id: str,
        ids: Collection[tuple[str, str]],
    ) -> dict[tuple[str, str], str]:
        """The stored key JSON of those ``(algorithm, key_id)`` that exist."""
        found: dict[tuple[str, str], str] = {}
        key_ids = sorted({key_id for _, key_id in ids})
        for start in range(0, len(key_ids), _CHUNK):
            chunk = key_ids[start : start + _CHUNK]
            rows = await txn.fetchall(
                "SELECT algorithm, key_id, key_json FROM e2e_one_time_keys"
                f" WHERE user_id = ? AND device_id = ? AND key_id IN ({placeholders(len(chunk))})",
                user_id,
                device_id,
                *chunk,
            )
            for algorithm, key_id, key_json in rows:
                if (algorithm, key_id) in ids:
                    found[(algorithm, key_id)] = key_json
        return found

    async def add_one_time_keys_txn(
        self,
        txn: Transaction,
        user_id: str,
        device_id: str,
        keys: Sequence[tuple[str, str, str]],
        now: int,
    ) -> None:
        """Add ``(algorithm, key_id, key_json)``; the caller has filtered out existing IDs."""
        await txn.executemany(
            "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json, ts)"
            # Another process may have stored the same key ID a moment ago: keep the first.
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [(user_id, device_id, alg, key_id, key_json, now) for alg, key_id, key_json in keys],
        )

    async def count_one_time_keys(self, user_id: str, device_id: str) -> dict[str, int]:
        rows = await self.db.fetchall(
            "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys"
            " WHERE user_id = ? AND device_id = ? GROUP BY algorithm",
            user_id,
            device_id,
        )
        return {r[0]: int(r[1]) for r in rows}

    async def count_one_time_keys_txn(
        self, txn: Transaction, user_id: str, device_id: str
    ) -> dict[str, int]:
        rows = await txn.fetchall(
            "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys"
            " WHERE user_id = ? AND device_id = ? GROUP BY algorithm",
            user_id,
            device_id,
        )
        return {r[0]: int(r[1]) for r in rows}

    # --- fallback keys -------------------------------------------------------------------
    async def set_fallback_key_txn(
        self,
        txn: Transaction,
        user_id: str,
        device_id: str,
        algorithm: str,
        key_id: str,
        key_json: str,
    ) -> None:
        """Store the device's fallback key for ``algorithm``. The same key uploaded again keeps
        its ``used`` flag (clients re-send it); a new key starts unused."""
        await txn.execute(
            "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)"
            " VALUES (?, ?, ?, ?, ?, FALSE)"
            " ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET"
            " used = CASE WHEN e2e_fallback_keys.key_id = excluded.key_id"
            " AND e2e_fallback_keys.key_json = excluded.key_json"
            " THEN e2e_fallback_keys.used ELSE FALSE END,"
            " key_id = excluded.key_id, key_json = excluded.key_json",
            user_id,
            device_id,
            algorithm,
            key_id,
            key_json,
        )

    async def get_unused_fallback_key_types(self, user_id: str, device_id: str) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT algorithm FROM e2e_fallback_keys"
            " WHERE user_id = ? AND device_id = ? AND used = FALSE ORDER BY algorithm",
            user_id,
            device_id,
        )
        return [r[0] for r in rows]

    # --- claiming ------------------------------------------------------------------------
    async def claim_one_time_keys(
        self, query: Mapping[str, Mapping[str, str]]
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """``{user: {device: algorithm}}`` → ``{user: {device: {"alg:key_id": key}}}``: the
        oldest one-time key of that algorithm, removed; else the fallback key (marked used,
        kept). Devices with neither are left out."""
        return await self.db.run_in_transaction("claim_one_time_keys", self._claim_txn, query)

    async def _claim_txn(
        self, txn: Transaction, query: Mapping[str, Mapping[str, str]]
    ) -> dict[str, dict[str, dict[str, Any]]]:
        claimed: dict[str, dict[str, dict[str, Any]]] = {}
        # Claims for the same devices (two clients starting sessions at once, on any process)
        # take the keys' rows in one order, so they queue instead of deadlocking.
        for user_id, devices in sorted(query.items()):
            for device_id, algorithm in sorted(devices.items()):
                key = await self._claim_one_txn(txn, user_id, device_id, algorithm)
                if key is not None:
                    claimed.setdefault(user_id, {})[device_id] = {key[0]: key[1]}
        return claimed

    async def _claim_one_txn(
        self, txn: Transaction, user_id: str, device_id: str, algorithm: str
    ) -> tuple[str, Any] | None:
        # A concurrent claim may take the key we picked between our SELECT and DELETE (the
        # DELETE then removes nothing): pick the next one.
        while True:
            row = await txn.fetchone(
                "SELECT key_id, key_json FROM e2e_one_time_keys"
                " WHERE user_id = ? AND device_id = ? AND algorithm = ?"
                " ORDER BY ts, key_id LIMIT 1",
                user_id,
                device_id,
                algorithm,
            )
            if row is None:
                break
            removed = await txn.execute(
                "DELETE FROM e2e_one_time_keys"
                " WHERE user_id = ? AND device_id = ? AND algorithm = ? AND key_id = ?",
                user_id,
                device_id,
                algorithm,
                row[0],
            )
            if removed == 1:
                return f"{algorithm}:{row[0]}", parse_json(row[1])
        row = await txn.fetchone(
            "SELECT key_id, key_json FROM e2e_fallback_keys"
            " WHERE user_id = ? AND device_id = ? AND algorithm = ?",
            user_id,
            device_id,
            algorithm,
        )
        if row is None:
            return None
        await txn.execute(
            "UPDATE e2e_fallback_keys SET used = TRUE"
            " WHERE user_id = ? AND device_id = ? AND algorithm = ?",
            user_id,
            device_id,
            algorithm,
        )
        return f"{algorithm}:{row[0]}", parse_json(row[1])

    # --- removal -------------------------------------------------------------------------
    async def delete_device_keys_txn(self, txn: Transaction, user_id: str, device_id: str) -> None:
        """Everything held for one device: its keys, its inbox, signatures made of it."""
        for table in ("e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys", "device_inbox"):
            await txn.execute(
                f"DELETE FROM {table} WHERE user_id = ? AND device_id = ?", user_id, device_id
            )
        await txn.execute(
            "DELETE FROM e2e_cross_signing_signatures"
            " WHERE target_user_id = ? AND target_key_id = ?",
            user_id,
            device_id,
        )

    async def delete_all_device_keys_txn(
        self, txn: Transaction, user_id: str, *, except_device_id: str | None = None
    ) -> list[str]:
        """Remove the keys of every device of ``user_id`` but one; returns the devices that
        had keys."""
        keep = except_device_id or ""
        rows = await txn.fetchall(
            "SELECT device_id FROM e2e_device_keys WHERE user_id = ? AND device_id <> ?",
            user_id,
            keep,
        )
        for table in ("e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys", "device_inbox"):
            await txn.execute(
                f"DELETE FROM {table} WHERE user_id = ? AND device_id <> ?", user_id, keep
            )
        return [r[0] for r in rows]

    # --- cross-signing -------------------------------------------------------------------
    async def get_cross_signing_keys(
        self, user_ids: Collection[str]
    ) -> dict[str, dict[str, dict[str, Any]]]:
        found: dict[str, dict[str, dict[str, Any]]] = {}
        ids = list(dict.fromkeys(user_ids))
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            rows = await self.db.fetchall(
                "SELECT user_id, key_type, key_json FROM e2e_cross_signing_keys"
                f" WHERE user_id IN ({placeholders(len(chunk))})",
                *chunk,
            )
            for user_id, key_type, key_json in rows:
                found.setdefault(user_id, {})[key_type] = parse_json(key_json)
        return found

    async def get_cross_signing_keys_txn(
        self, txn: Transaction, user_id: str
    ) -> dict[str, dict[str, Any]]:
        rows = await txn.fetchall(
            "SELECT key_type, key_json FROM e2e_cross_signing_keys WHERE user_id = ?", user_id
        )
        return {r[0]: parse_json(r[1]) for r in rows}

    async def set_cross_signing_key_txn(
        self, txn: Transaction, user_id: str, key_type: str, key: dict[str, Any], stream_id: int
    ) -> None:
        await txn.execute(
            "INSERT INTO e2e_cross_signing_keys (user_id, key_type, key_json, stream_id)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (user_id, key_type) DO UPDATE SET"
            " key_json = excluded.key_json, stream_id = excluded.stream_id",
            user_id,
            key_type,
            canonical_json_text(key),
            stream_id,
        )

    # --- signatures ----------------------------------------------------------------------
    async def add_signatures_txn(self, txn: Transaction, rows: Sequence[Signature]) -> None:
        for s in rows:
            await txn.execute(
                "INSERT INTO e2e_cross_signing_signatures"
                " (signer_user_id, signer_key_id, target_user_id, target_key_id, signature)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (signer_user_id, signer_key_id, target_user_id, target_key_id)"
                " DO UPDATE SET signature = excluded.signature",
                s.signer_user_id,
                s.signer_key_id,
                s.target_user_id,
                s.target_key_id,
                s.signature,
            )

    async def get_signatures(
        self, targets: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, dict[str, str]]]:
        """``(target_user_id, target_key_id)`` → ``{signer_user_id: {signer_key_id: sig}}``.

        One statement per chunk of target users (a user has few signed keys); the rows of keys
        not asked for are dropped here."""
        wanted = set(targets)
        found: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
        users = sorted({user_id for user_id, _ in wanted})
        for start in range(0, len(users), _CHUNK):
            chunk = users[start : start + _CHUNK]
            rows = await self.db.fetchall(
                "SELECT target_user_id, target_key_id, signer_user_id, signer_key_id, signature"
                " FROM e2e_cross_signing_signatures"
                f" WHERE target_user_id IN ({placeholders(len(chunk))})",
                *chunk,
            )
            for user_id, key_id, signer, signer_key, signature in rows:
                if (user_id, key_id) in wanted:
                    found.setdefault((user_id, key_id), {}).setdefault(signer, {})[signer_key] = (
                        signature
                    )
        return found

    async def get_signatures_txn(
        self, txn: Transaction, user_id: str, key_ids: Collection[str]
    ) -> dict[str, dict[str, dict[str, str]]]:
        """Inside a transaction (its own writes seen): ``target_key_id`` → ``{signer_user_id:
        {signer_key_id: sig}}`` for keys of ``user_id``."""
        found: dict[str, dict[str, dict[str, str]]] = {}
        wanted = sorted(set(key_ids))
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            rows = await txn.fetchall(
                "SELECT target_key_id, signer_user_id, signer_key_id, signature"
                " FROM e2e_cross_signing_signatures WHERE target_user_id = ?"
                f" AND target_key_id IN ({placeholders(len(chunk))})",
                user_id,
                *chunk,
            )
            for key_id, signer, signer_key, signature in rows:
                found.setdefault(key_id, {}).setdefault(signer, {})[signer_key] = signature
        return found
