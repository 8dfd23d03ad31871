"""Reads and writes of the admin API's users endpoints: the paginated user list (with profiles,
last use of a token and the erased flag), erasure, and the sessions ``whois`` shows."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, placeholders

#: order_by value → SQL expression (the keys are Synapse's; the values never come from a request).
USER_ORDER_COLUMNS = {
    "name": "u.user_id",
    "displayname": "p.displayname",
    "admin": "u.admin",
    "deactivated": "u.deactivated",
    "avatar_url": "p.avatar_url",
    "creation_ts": "u.created_ts",
    "last_seen_ts": "t.last_seen_ts",
    # Columns we do not have (every user has the same value): the user ID orders them.
    "is_guest": "u.user_id",
    "user_type": "u.user_id",
    "shadow_banned": "u.shadow_banned",
    "locked": "u.user_id",
}


@dataclass(frozen=True, slots=True)
class UserQuery:
    start: int = 0
    limit: int = 100
    #: substring of the localpart or the display name (Synapse's ``name``).
    name: str | None = None
    #: substring of the user ID (Synapse's ``user_id``; ignored when ``name`` is given).
    user_id: str | None = None
    #: None: everyone; False: only active users; True: only deactivated users.
    deactivated: bool | None = False
    admins: bool | None = None
    order_by: str = "name"
    backwards: bool = False


@dataclass(frozen=True, slots=True)
class AdminUserRow:
    user_id: str
    admin: bool
    deactivated: bool
    created_ts: int
    displayname: str | None
    avatar_url: str | None
    erased: bool
    last_seen_ts: int | None
    shadow_banned: bool = False
    suspended: bool = False


@dataclass(frozen=True, slots=True)
class TokenSession:
    token_hash: str
    device_id: str | None
    created_ts: int
    last_used: int | None


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_BASE = (
    " FROM users u LEFT JOIN profiles p ON p.user_id = u.user_id"
    " LEFT JOIN erased_users e ON e.user_id = u.user_id"
    " LEFT JOIN (SELECT user_id, MAX(last_used) AS last_seen_ts FROM access_tokens"
    " GROUP BY user_id) t ON t.user_id = u.user_id"
)


class AdminUsersStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_users(self, query: UserQuery) -> tuple[list[AdminUserRow], int]:
        """One page of users and the number of users matching the filters."""
        filters: list[str] = []
        args: list[object] = []
        if query.name:
            term = _like_escape(query.name.lower())
            filters.append(
                "(LOWER(u.user_id) LIKE ? ESCAPE '\\' OR LOWER(p.displayname) LIKE ? ESCAPE '\\')"
            )
            args += [f"@%{term}%:%", f"%{term}%"]
        elif query.user_id:
            filters.append("LOWER(u.user_id) LIKE ? ESCAPE '\\'")
            args.append(f"%{_like_escape(query.user_id.lower())}%")
        if query.deactivated is not None:
            filters.append("u.deactivated = ?")
            args.append(query.deactivated)
        if query.admins is not None:
            filters.append("u.admin = ?")
            args.append(query.admins)
        where = (" WHERE " + " AND ".join(filters)) if filters else ""
        total = int(await self.db.fetchval(f"SELECT COUNT(*){_BASE}{where}", *args))
        column = USER_ORDER_COLUMNS[query.order_by]
        direction = "DESC" if query.backwards else "ASC"
        # NULLs last whichever the engine (PostgreSQL and SQLite disagree by default).
        rows = await self.db.fetchall(
            "SELECT u.user_id, u.admin, u.deactivated, u.created_ts, p.displayname,"
            " p.avatar_url, e.user_id IS NOT NULL, t.last_seen_ts, u.shadow_banned, u.suspended"
            f"{_BASE}{where}"
            f" ORDER BY ({column}) IS NULL, {column} {direction}, u.user_id ASC"
            " LIMIT ? OFFSET ?",
            *args,
            query.limit,
            query.start,
        )
        return [_row(r) for r in rows], total

    async def get_user_row(self, user_id: str) -> AdminUserRow | None:
        row = await self.db.fetchone(
            "SELECT u.user_id, u.admin, u.deactivated, u.created_ts, p.displayname,"
            " p.avatar_url, e.user_id IS NOT NULL, t.last_seen_ts, u.shadow_banned, u.suspended"
            f"{_BASE} WHERE u.user_id = ?",
            user_id,
        )
        return None if row is None else _row(row)

    async def set_erased(self, user_id: str, erased: bool) -> None:
        async with self.db.transaction("set_user_erased") as txn:
            if erased:
                await txn.execute(
                    "INSERT INTO erased_users (user_id) VALUES (?)"
                    " ON CONFLICT (user_id) DO NOTHING",
                    user_id,
                )
            else:
                await txn.execute("DELETE FROM erased_users WHERE user_id = ?", user_id)

    async def erased_among(self, user_ids: Collection[str]) -> set[str]:
        """Those of ``user_ids`` whose data has been erased (one statement; none for none)."""
        ids = sorted(set(user_ids))
        if not ids:
            return set()
        rows = await self.db.fetchall(
            f"SELECT user_id FROM erased_users WHERE user_id IN ({placeholders(len(ids))})", *ids
        )
        return {r[0] for r in rows}

    async def set_deactivated(self, user_id: str, deactivated: bool) -> None:
        """Only the flag (re-activation; deactivation goes through UsersStore.deactivate_user,
        which also logs the user out)."""
        async with self.db.transaction("set_user_deactivated") as txn:
            await txn.execute(
                "UPDATE users SET deactivated = ? WHERE user_id = ?", deactivated, user_id
            )

    async def get_sessions(self, user_id: str) -> list[TokenSession]:
        """The user's access tokens (where each was used from: ``client_ips``)."""
        rows = await self.db.fetchall(
            "SELECT token_hash, device_id, created_ts, last_used FROM access_tokens"
            " WHERE user_id = ? ORDER BY device_id, created_ts",
            user_id,
        )
        return [
            TokenSession(r[0], r[1], int(r[2]), None if r[3] is None else int(r[3])) for r in rows
        ]


def _row(r: tuple[Any, ...]) -> AdminUserRow:
    return AdminUserRow(
        user_id=str(r[0]),
        admin=bool(r[1]),
        deactivated=bool(r[2]),
        created_ts=int(r[3]),
        displayname=r[4],
        avatar_url=r[5],
        erased=bool(r[6]),
        last_seen_ts=None if r[7] is None else int(r[7]),
        shadow_banned=bool(r[8]),
        suspended=bool(r[9]),
    )
