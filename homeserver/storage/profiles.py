"""Global profiles (display name, avatar URL) of local users."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction, placeholders
from homeserver.storage.user_directory import refresh_local_user_txn

#: The profile columns a client may set (also their JSON keys).
PROFILE_FIELDS = ("displayname", "avatar_url")


@dataclass(frozen=True, slots=True)
class ProfileRecord:
    displayname: str | None
    avatar_url: str | None

    def to_json(self) -> dict[str, str]:
        """Only the fields that are set, as Synapse answers ``GET /profile``."""
        out: dict[str, str] = {}
        if self.displayname is not None:
            out["displayname"] = self.displayname
        if self.avatar_url is not None:
            out["avatar_url"] = self.avatar_url
        return out


EMPTY_PROFILE = ProfileRecord(None, None)


class ProfilesStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_profile_txn(
        self, txn: Transaction, user_id: str, displayname: str | None
    ) -> None:
        await txn.execute(
            "INSERT INTO profiles (user_id, displayname) VALUES (?, ?)"
            " ON CONFLICT (user_id) DO NOTHING",
            user_id,
            displayname,
        )
        await refresh_local_user_txn(txn, user_id)

    async def get_profile(self, user_id: str) -> ProfileRecord:
        """The user's profile; empty when none was ever set (the user may not exist)."""
        row = await self.db.indexed.fetchone(
            "SELECT displayname, avatar_url FROM profiles WHERE user_id = ?", user_id
        )
        return EMPTY_PROFILE if row is None else ProfileRecord(row[0], row[1])

    async def get_profiles(self, user_ids: Sequence[str]) -> dict[str, ProfileRecord]:
        """:meth:`get_profile` of many users (one read per 500); users without a row are
        left out."""
        found: dict[str, ProfileRecord] = {}
        for start in range(0, len(user_ids), 500):
            chunk = user_ids[start : start + 500]
            rows = await self.db.fetchall(
                "SELECT user_id, displayname, avatar_url FROM profiles"
                f" WHERE user_id IN ({placeholders(len(chunk))})",
                *chunk,
            )
            found.update((r[0], ProfileRecord(r[1], r[2])) for r in rows)
        return found

    async def set_field(self, user_id: str, field: str, value: str | None) -> None:
        """Set one of :data:`PROFILE_FIELDS` (None clears it), creating the row if needed."""
        if field not in PROFILE_FIELDS:
            raise ValueError(f"unknown profile field {field!r}")
        # The column name comes from the fixed tuple above, never from a request.
        async with self.db.transaction("set_profile_field") as txn:
            await txn.execute(
                f"INSERT INTO profiles (user_id, {field}) VALUES (?, ?)"
                f" ON CONFLICT (user_id) DO UPDATE SET {field} = excluded.{field}",
                user_id,
                value,
            )
            await refresh_local_user_txn(txn, user_id)
