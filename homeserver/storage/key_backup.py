"""Server-side key backup: each user's backup versions and the room keys stored in them.

Every write for a user locks that user's row in ``e2e_room_keys_users`` first, so a version
check, the comparison with the stored keys and the write happen as one step per user (two
devices uploading the same session at once cannot both win). Which copy of a key is better is
the caller's rule, passed in; this module only stores.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Transaction, placeholders

_CHUNK = 500
_USERS = "e2e_room_keys_users"

#: (room ID, session ID)
SessionKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class BackupVersion:
    version: int
    algorithm: str
    #: canonical JSON of the version's ``auth_data``
    auth_data: str
    etag: int
    #: how many keys the version holds
    count: int


@dataclass(frozen=True, slots=True)
class BackedUpKey:
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    #: canonical JSON of the encrypted ``session_data``
    session_data: str


class UploadStatus(enum.Enum):
    OK = "ok"
    #: the version does not exist (or the user has no backup at all)
    NOT_FOUND = "not_found"
    #: the version exists but a newer one is current: keys go only to the current version
    NOT_CURRENT = "not_current"
    #: the upload would take the version past its limit of keys
    TOO_MANY_KEYS = "too_many_keys"


@dataclass(frozen=True, slots=True)
class UploadResult:
    status: UploadStatus
    etag: int = 0
    count: int = 0
    current_version: int | None = None


@dataclass(frozen=True, slots=True)
class KeysChange:
    """A version's ``etag`` and key count after a change of its keys."""

    etag: int
    count: int


#: ``should_replace(stored, uploaded)``: whether the uploaded copy of a key is better.
ReplaceRule = Callable[[BackedUpKey, BackedUpKey], bool]


class KeyBackupStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- versions --------------------------------------------------------------------------
    async def create_version(
        self, user_id: str, algorithm: str, auth_data: str, *, max_versions: int
    ) -> int | None:
        """A new version, which becomes the current one; None when the user already has
        ``max_versions`` live versions."""
        async with self.db.transaction("create_backup_version") as txn:
            await txn.execute(
                f"INSERT INTO {_USERS} (user_id, last_version) VALUES (?, 0)"
                " ON CONFLICT (user_id) DO NOTHING",
                user_id,
            )
            await txn.lock_row(_USERS, "user_id", user_id)
            live = await txn.fetchval(
                "SELECT COUNT(*) FROM e2e_room_keys_versions WHERE user_id = ?", user_id
            )
            if int(live) >= max_versions:
                return None
            last = await txn.fetchval(
                f"SELECT last_version FROM {_USERS} WHERE user_id = ?", user_id
            )
            version = int(last) + 1
            await txn.execute(
                f"UPDATE {_USERS} SET last_version = ? WHERE user_id = ?", version, user_id
            )
            await txn.execute(
                "INSERT INTO e2e_room_keys_versions"
                " (user_id, version, algorithm, auth_data, etag) VALUES (?, ?, ?, ?, 0)",
                user_id,
                version,
                algorithm,
                auth_data,
            )
        return version

    async def get_version(self, user_id: str, version: int | None) -> BackupVersion | None:
        """``version`` (None: the current one) with its key count, or None if there is none."""
        async with self.db.transaction("get_backup_version", read_only=True) as txn:
            if version is None:
                row = await txn.fetchone(
                    "SELECT version, algorithm, auth_data, etag FROM e2e_room_keys_versions"
                    " WHERE user_id = ? ORDER BY version DESC LIMIT 1",
                    user_id,
                )
            else:
                row = await txn.fetchone(
                    "SELECT version, algorithm, auth_data, etag FROM e2e_room_keys_versions"
                    " WHERE user_id = ? AND version = ?",
                    user_id,
                    version,
                )
            if row is None:
                return None
            count = await _count(txn, user_id, int(row[0]))
        return BackupVersion(int(row[0]), row[1], row[2], int(row[3]), count)

    async def update_auth_data(self, user_id: str, version: int, auth_data: str) -> bool:
        """Replace the version's ``auth_data``; False if there is no such version."""
        async with self.db.transaction("update_backup_version") as txn:
            await txn.lock_row(_USERS, "user_id", user_id)
            changed = await txn.execute(
                "UPDATE e2e_room_keys_versions SET auth_data = ? WHERE user_id = ? AND version = ?",
                auth_data,
                user_id,
                version,
            )
        return changed > 0

    async def delete_version(self, user_id: str, version: int) -> bool:
        """Delete the version and every key in it; False if there is no such version."""
        async with self.db.transaction("delete_backup_version") as txn:
            await txn.lock_row(_USERS, "user_id", user_id)
            deleted = await txn.execute(
                "DELETE FROM e2e_room_keys_versions WHERE user_id = ? AND version = ?",
                user_id,
                version,
            )
            await txn.execute(
                "DELETE FROM e2e_room_keys WHERE user_id = ? AND version = ?", user_id, version
            )
        return deleted > 0

    # --- keys ------------------------------------------------------------------------------
    async def upload_keys(
        self,
        user_id: str,
        version: int,
        keys: Mapping[SessionKey, BackedUpKey],
        should_replace: ReplaceRule,
        *,
        max_keys: int,
    ) -> UploadResult:
        """Store each key the version lacks, and each one ``should_replace`` prefers to the
        stored copy, if ``version`` is the current version; the etag grows if anything
        changed."""
        return await self.db.run_in_transaction(
            "upload_backup_keys", self._upload_txn, user_id, version, keys, should_replace, max_keys
        )

    async def _upload_txn(
        self,
        txn: Transaction,
        user_id: str,
        version: int,
        keys: Mapping[SessionKey, BackedUpKey],
        should_replace: ReplaceRule,
        max_keys: int,
    ) -> UploadResult:
        await txn.lock_row(_USERS, "user_id", user_id)
        current = await txn.fetchone(
            "SELECT version, etag FROM e2e_room_keys_versions"
            " WHERE user_id = ? ORDER BY version DESC LIMIT 1",
            user_id,
        )
        if current is None:
            return UploadResult(UploadStatus.NOT_FOUND)
        current_version, etag = int(current[0]), int(current[1])
        if current_version != version:
            exists = await txn.fetchone(
                "SELECT 1 FROM e2e_room_keys_versions WHERE user_id = ? AND version = ?",
                user_id,
                version,
            )
            if exists is None:
                return UploadResult(UploadStatus.NOT_FOUND)
            return UploadResult(UploadStatus.NOT_CURRENT, current_version=current_version)

        stored = await _stored_keys(txn, user_id, version, keys)
        changed = [
            (key, new)
            for key, new in keys.items()
            if key not in stored or should_replace(stored[key], new)
        ]
        added = sum(1 for key, _ in changed if key not in stored)
        count = await _count(txn, user_id, version)
        if count + added > max_keys:
            return UploadResult(UploadStatus.TOO_MANY_KEYS, etag=etag, count=count)
        if changed:
            await txn.executemany(
                "INSERT INTO e2e_room_keys (user_id, version, room_id, session_id,"
                " first_message_index, forwarded_count, is_verified, session_data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET"
                " first_message_index = excluded.first_message_index,"
                " forwarded_count = excluded.forwarded_count,"
                " is_verified = excluded.is_verified, session_data = excluded.session_data",
                [
                    (
                        user_id,
                        version,
                        room_id,
                        session_id,
                        new.first_message_index,
                        new.forwarded_count,
                        new.is_verified,
                        new.session_data,
                    )
                    for (room_id, session_id), new in changed
                ],
            )
            etag = await _bump_etag(txn, user_id, version)
        return UploadResult(UploadStatus.OK, etag=etag, count=count + added)

    async def get_keys(
        self,
        user_id: str,
        version: int,
        room_id: str | None = None,
        session_id: str | None = None,
    ) -> dict[str, dict[str, BackedUpKey]] | None:
        """room ID → session ID → key, for the whole version, one room or one session; None if
        there is no such version."""
        where, args = _selection(user_id, version, room_id, session_id)
        async with self.db.transaction("get_backup_keys", read_only=True) as txn:
            exists = await txn.fetchone(
                "SELECT 1 FROM e2e_room_keys_versions WHERE user_id = ? AND version = ?",
                user_id,
                version,
            )
            if exists is None:
                return None
            rows = await txn.fetchall(
                "SELECT room_id, session_id, first_message_index, forwarded_count,"
                f" is_verified, session_data FROM e2e_room_keys WHERE {where}",
                *args,
            )
        rooms: dict[str, dict[str, BackedUpKey]] = {}
        for room, session, key in _key_rows(rows):
            rooms.setdefault(room, {})[session] = key
        return rooms

    async def delete_keys(
        self,
        user_id: str,
        version: int,
        room_id: str | None = None,
        session_id: str | None = None,
    ) -> KeysChange | None:
        """Delete the version's keys (all, one room's or one session's); None if there is no
        such version. The etag grows, as in Synapse, even if nothing matched."""
        where, args = _selection(user_id, version, room_id, session_id)
        async with self.db.transaction("delete_backup_keys") as txn:
            await txn.lock_row(_USERS, "user_id", user_id)
            exists = await txn.fetchone(
                "SELECT 1 FROM e2e_room_keys_versions WHERE user_id = ? AND version = ?",
                user_id,
                version,
            )
            if exists is None:
                return None
            await txn.execute(f"DELETE FROM e2e_room_keys WHERE {where}", *args)
            etag = await _bump_etag(txn, user_id, version)
            count = await _count(txn, user_id, version)
        return KeysChange(etag, count)


async def delete_all_backups_txn(txn: Transaction, user_id: str) -> None:
    """Every version and key of ``user_id`` (a deactivated account's backup, as Synapse).
    The version counter stays, so numbers are still never reused."""
    await txn.execute("DELETE FROM e2e_room_keys WHERE user_id = ?", user_id)
    await txn.execute("DELETE FROM e2e_room_keys_versions WHERE user_id = ?", user_id)


def _key_rows(rows: list[tuple[Any, ...]]) -> list[tuple[str, str, BackedUpKey]]:
    return [
        (row[0], row[1], BackedUpKey(int(row[2]), int(row[3]), bool(row[4]), row[5]))
        for row in rows
    ]


def _selection(
    user_id: str, version: int, room_id: str | None, session_id: str | None
) -> tuple[str, list[object]]:
    where = "user_id = ? AND version = ?"
    args: list[object] = [user_id, version]
    if room_id is not None:
        where += " AND room_id = ?"
        args.append(room_id)
        if session_id is not None:
            where += " AND session_id = ?"
            args.append(session_id)
    return where, args


async def _count(txn: Transaction, user_id: str, version: int) -> int:
    return int(
        await txn.fetchval(
            "SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = ? AND version = ?",
            user_id,
            version,
        )
    )


async def _bump_etag(txn: Transaction, user_id: str, version: int) -> int:
    await txn.execute(
        "UPDATE e2e_room_keys_versions SET etag = etag + 1 WHERE user_id = ? AND version = ?",
        user_id,
        version,
    )
    return int(
        await txn.fetchval(
            "SELECT etag FROM e2e_room_keys_versions WHERE user_id = ? AND version = ?",
            user_id,
            version,
        )
    )


async def _stored_keys(
    txn: Transaction, user_id: str, version: int, keys: Mapping[SessionKey, BackedUpKey]
) -> dict[SessionKey, BackedUpKey]:
    """The stored copies of ``keys`` (looked up by session ID, then matched on the room)."""
    sessions = list(dict.fromkeys(session_id for _, session_id in keys))
    stored: dict[SessionKey, BackedUpKey] = {}
    for start in range(0, len(sessions), _CHUNK):
        chunk = sessions[start : start + _CHUNK]
        rows = await txn.fetchall(
            "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified,"
            " session_data FROM e2e_room_keys WHERE user_id = ? AND version = ?"
            f" AND session_id IN ({placeholders(len(chunk))})",
            user_id,
            version,
            *chunk,
        )
        for room_id, session_id, key in _key_rows(rows):
            if (room_id, session_id) in keys:
                stored[(room_id, session_id)] = key
    return stored
