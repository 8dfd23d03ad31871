"""Users, devices and access tokens.

Access tokens are stored only as SHA-256 hashes (DESIGN.md §4): callers hash with
:func:`hash_access_token` and this store never sees a token. Password hashes (argon2) are
computed by the auth service; this store keeps the encoded string.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction
from homeserver.storage.key_backup import delete_all_backups_txn
from homeserver.storage.pushers import delete_user_pushers_txn
from homeserver.storage.user_directory import add_local_user_txn as add_local_user_to_directory_txn


def hash_access_token(token: str) -> str:
    """The stored form of an access token: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_id: str
    password_hash: str | None
    admin: bool
    created_ts: int
    deactivated: bool


@dataclass(frozen=True, slots=True)
class TokenOwner:
    """Who an access token belongs to."""

    user_id: str
    device_id: str | None
    admin: bool
    deactivated: bool
    #: a token made by ``POST /_synapse/admin/v1/users/{u}/login`` may expire (ms).
    valid_until_ms: int | None = None


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    user_id: str
    device_id: str
    display_name: str | None


class UsersStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- users ---------------------------------------------------------------------------
    async def create_user(
        self, user_id: str, password_hash: str | None, *, created_ts: int, admin: bool = False
    ) -> bool:
        """Register ``user_id``; False if it is taken."""
        async with self.db.transaction("create_user") as txn:
            return await self.create_user_txn(
                txn, user_id, password_hash, created_ts=created_ts, admin=admin
            )

    async def create_user_txn(
        self,
        txn: Transaction,
        user_id: str,
        password_hash: str | None,
        *,
        created_ts: int,
        admin: bool = False,
    ) -> bool:
        changed = await txn.execute(
            "INSERT INTO users (user_id, password_hash, admin, created_ts)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO NOTHING",
            user_id,
            password_hash,
            admin,
            created_ts,
        )
        if changed == 1:
            await add_local_user_to_directory_txn(txn, user_id)
        return changed == 1

    async def find_user_id_case_insensitive(self, user_id: str) -> str | None:
        """The registered spelling of ``user_id`` if exactly one user matches it ignoring case
        (login accepts ``@Alice:hs`` for ``@alice:hs``, as Synapse does)."""
        rows = await self.db.fetchall(
            "SELECT user_id FROM users WHERE LOWER(user_id) = ?", user_id.lower()
        )
        return rows[0][0] if len(rows) == 1 else None

    async def get_user(self, user_id: str) -> UserRecord | None:
        row = await self.db.fetchone(
            "SELECT user_id, password_hash, admin, created_ts, deactivated FROM users"
            " WHERE user_id = ?",
            user_id,
        )
        if row is None:
            return None
        return UserRecord(row[0], row[1], bool(row[2]), int(row[3]), bool(row[4]))

    async def set_password_hash(self, user_id: str, password_hash: str | None) -> bool:
        async with self.db.transaction("set_password_hash") as txn:
            changed = await txn.execute(
                "UPDATE users SET password_hash = ? WHERE user_id = ?", password_hash, user_id
            )
        return changed == 1

    async def set_admin(self, user_id: str, admin: bool) -> bool:
        async with self.db.transaction("set_admin") as txn:
            changed = await txn.execute(
                "UPDATE users SET admin = ? WHERE user_id = ?", admin, user_id
            )
        return changed == 1

    async def deactivate_user(self, user_id: str) -> bool:
        """Mark deactivated, forget the password, log every device out and delete the key
        backups and pushers, atomically."""

        async def run(txn: Transaction) -> bool:
            changed = await txn.execute(
                "UPDATE users SET deactivated = TRUE, password_hash = NULL WHERE user_id = ?",
                user_id,
            )
            # Every device and token, the devices locked in device order first: the order the
            # client-IP flush locks them in (a plain DELETE took the devices in the order of
            # their rows, which deadlocked with a flush now and then on PostgreSQL).
            await self.delete_devices_for_user_txn(txn, user_id)
            await delete_all_backups_txn(txn, user_id)
            # As Synapse: a deactivated account's phones stop hearing about its rooms.
            await delete_user_pushers_txn(txn, user_id)
            return changed == 1

        # Retried: a deadlock with another process writing the user's devices or tokens (its
        # client-IP flush) must not fail the deactivation.
        return await self.db.run_in_transaction("deactivate_user", run)

    async def count_users(self) -> int:
        return int(await self.db.fetchval("SELECT COUNT(*) FROM users"))

    # --- access tokens -------------------------------------------------------------------
    async def add_access_token(
        self, token_hash: str, user_id: str, device_id: str | None, *, created_ts: int
    ) -> None:
        async with self.db.transaction("add_access_token") as txn:
            await self.add_access_token_txn(
                txn, token_hash, user_id, device_id, created_ts=created_ts
            )

    async def add_access_token_txn(
        self,
        txn: Transaction,
        token_hash: str,
        user_id: str,
        device_id: str | None,
        *,
        created_ts: int,
        valid_until_ms: int | None = None,
        puppeted_by: str | None = None,
    ) -> None:
        await txn.execute(
            "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts,"
            " valid_until_ms, puppeted_by) VALUES (?, ?, ?, ?, ?, ?)",
            token_hash,
            user_id,
            device_id,
            created_ts,
            valid_until_ms,
            puppeted_by,
        )

    async def get_token_owner(self, token_hash: str) -> TokenOwner | None:
        row = await self.db.indexed.fetchone(
            "SELECT t.user_id, t.device_id, u.admin, u.deactivated, t.valid_until_ms"
            " FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = ?",
            token_hash,
        )
        if row is None:
            return None
        valid_until = None if row[4] is None else int(row[4])
        return TokenOwner(row[0], row[1], bool(row[2]), bool(row[3]), valid_until)

    async def touch_access_token(self, token_hash: str, now: int) -> None:
        async with self.db.transaction("touch_access_token") as txn:
            await txn.execute(
                "UPDATE access_tokens SET last_used = ? WHERE token_hash = ?", now, token_hash
            )

    async def delete_access_token(self, token_hash: str) -> bool:
        async with self.db.transaction("delete_access_token") as txn:
            changed = await txn.execute(
                "DELETE FROM access_tokens WHERE token_hash = ?", token_hash
            )
        return changed == 1

    async def delete_access_tokens_for_user(
        self, user_id: str, *, except_token_hash: str | None = None
    ) -> int:
        async with self.db.transaction("delete_access_tokens_for_user") as txn:
            return await txn.execute(
                "DELETE FROM access_tokens WHERE user_id = ? AND token_hash <> ?",
                user_id,
                except_token_hash or "",
            )

    async def delete_puppet_tokens(self, admin_id: str) -> int:
        """The tokens ``admin_id`` made to act as other users (admin ``…/login``)."""
        async with self.db.transaction("delete_puppet_tokens") as txn:
            return await txn.execute("DELETE FROM access_tokens WHERE puppeted_by = ?", admin_id)

    # --- devices -------------------------------------------------------------------------
    async def upsert_device(
        self, user_id: str, device_id: str, display_name: str | None = None
    ) -> None:
        """Create the device, or update its display name when one is given."""
        async with self.db.transaction("upsert_device") as txn:
            await self.upsert_device_txn(txn, user_id, device_id, display_name)

    async def upsert_device_txn(
        self, txn: Transaction, user_id: str, device_id: str, display_name: str | None = None
    ) -> None:
        await txn.execute(
            "INSERT INTO devices (user_id, device_id, display_name) VALUES (?, ?, ?)"
            " ON CONFLICT (user_id, device_id) DO UPDATE"
            " SET display_name = COALESCE(excluded.display_name, devices.display_name)",
            user_id,
            device_id,
            display_name,
        )

    async def get_device(self, user_id: str, device_id: str) -> DeviceRecord | None:
        row = await self.db.fetchone(
            "SELECT user_id, device_id, display_name FROM devices"
            " WHERE user_id = ? AND device_id = ?",
            user_id,
            device_id,
        )
        return None if row is None else DeviceRecord(*row)

    async def set_device_display_name(
        self, user_id: str, device_id: str, display_name: str | None
    ) -> bool:
        """Rename an existing device (None clears the name); False if there is no such device."""
        async with self.db.transaction("set_device_display_name") as txn:
            changed = await txn.execute(
                "UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?",
                display_name,
                user_id,
                device_id,
            )
        return changed == 1

    async def delete_access_tokens_for_device_txn(
        self, txn: Transaction, user_id: str, device_id: str
    ) -> None:
        await txn.execute(
            "DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?", user_id, device_id
        )

    async def delete_devices_for_user(
        self, user_id: str, *, except_device_id: str | None = None
    ) -> None:
        """Remove every device of the user but ``except_device_id``, with their access tokens
        (tokens without a device included), in one transaction."""
        async with self.db.transaction("delete_devices_for_user") as txn:
            await self.delete_devices_for_user_txn(txn, user_id, except_device_id=except_device_id)

    async def delete_devices_for_user_txn(
        self, txn: Transaction, user_id: str, *, except_device_id: str | None = None
    ) -> list[str]:
        """:meth:`delete_devices_for_user` inside the caller's transaction (which also removes
        the devices' keys); returns the IDs of the devices removed."""
        keep = except_device_id or ""
        # The devices' rows first, locked in device order, then their tokens: the order the
        # client-IP flush locks them in (a DELETE of many rows takes them in no set order).
        rows = await txn.fetchall(
            "SELECT device_id FROM devices WHERE user_id = ? AND device_id <> ?"
            " ORDER BY device_id" + txn.lock_rows_clause,
            user_id,
            keep,
        )
        await txn.execute("DELETE FROM devices WHERE user_id = ? AND device_id <> ?", user_id, keep)
        await txn.execute(
            "DELETE FROM access_tokens WHERE user_id = ? AND (device_id IS NULL OR device_id <> ?)",
            user_id,
            keep,
        )
        return sorted(r[0] for r in rows)

    async def get_devices(self, user_id: str) -> list[DeviceRecord]:
        rows = await self.db.fetchall(
            "SELECT user_id, device_id, display_name FROM devices WHERE user_id = ?"
            " ORDER BY device_id",
            user_id,
        )
        return [DeviceRecord(*row) for row in rows]

    async def delete_device(self, user_id: str, device_id: str) -> bool:
        """Remove a device and log it out."""
        async with self.db.transaction("delete_device") as txn:
            return await self.delete_device_txn(txn, user_id, device_id)

    async def delete_device_txn(self, txn: Transaction, user_id: str, device_id: str) -> bool:
        """Remove a device and log it out, inside the caller's transaction (which also removes
        the device's keys)."""
        # The device's row before its tokens': the order the client-IP flush locks them in.
        changed = await txn.execute(
            "DELETE FROM devices WHERE user_id = ? AND device_id = ?", user_id, device_id
        )
        await txn.execute(
            "DELETE FROM access_tokens WHERE user_id = ? AND device_id = ?", user_id, device_id
        )
        return changed == 1
