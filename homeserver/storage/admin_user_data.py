"""Reads and writes behind the admin API's per-user tabs (Synapse's ``rest/admin/users.py``,
``devices.py``, ``experimental_features.py``): devices with where they were last seen, the
user's media, memberships, account data, invite and join counts, rate-limit overrides,
experimental features and the shadow-ban flag."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database

#: order_by value → SQL expression (Synapse's keys; the values never come from a request).
MEDIA_ORDER_COLUMNS = {
    "media_id": "media_id",
    "upload_name": "upload_name",
    "created_ts": "created_ts",
    # We keep no last access time: the creation time orders it.
    "last_access_ts": "created_ts",
    "media_length": "media_length",
    "media_type": "media_type",
    "quarantined_by": "quarantined_by",
    "safe_from_quarantine": "safe_from_quarantine",
}


@dataclass(frozen=True, slots=True)
class DeviceRow:
    user_id: str
    device_id: str
    display_name: str | None
    last_seen_ts: int | None
    last_seen_ip: str | None
    last_seen_user_agent: str | None


@dataclass(frozen=True, slots=True)
class UserMediaRow:
    media_id: str
    created_ts: int
    media_type: str | None
    media_length: int | None
    upload_name: str | None
    quarantined_by: str | None
    safe_from_quarantine: bool


@dataclass(frozen=True, slots=True)
class RateLimitOverride:
    messages_per_second: int
    burst_count: int


def _device(r: Any) -> DeviceRow:
    return DeviceRow(r[0], r[1], r[2], None if r[3] is None else int(r[3]), r[4], r[5])


_DEVICE_COLUMNS = (
    "user_id, device_id, display_name, last_seen_ts, last_seen_ip, last_seen_user_agent"
)


class AdminUserDataStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- devices --------------------------------------------------------------------------
    async def get_devices(self, user_id: str) -> list[DeviceRow]:
        rows = await self.db.fetchall(
            f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE user_id = ? ORDER BY device_id",
            user_id,
        )
        return [_device(r) for r in rows]

    async def get_device(self, user_id: str, device_id: str) -> DeviceRow | None:
        row = await self.db.fetchone(
            f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE user_id = ? AND device_id = ?",
            user_id,
            device_id,
        )
        return None if row is None else _device(row)

    # --- shadow ban -------------------------------------------------------------------------
    async def set_shadow_banned(self, user_id: str, banned: bool) -> bool:
        async with self.db.transaction("set_shadow_banned") as txn:
            changed = await txn.execute(
                "UPDATE users SET shadow_banned = ? WHERE user_id = ?", banned, user_id
            )
        return changed == 1

    async def shadow_banned_users(self) -> set[str]:
        rows = await self.db.fetchall("SELECT user_id FROM users WHERE shadow_banned")
        return {r[0] for r in rows}

    # --- rate-limit overrides -----------------------------------------------------------------
    async def get_ratelimit(self, user_id: str) -> RateLimitOverride | None:
        row = await self.db.fetchone(
            "SELECT messages_per_second, burst_count FROM ratelimit_override WHERE user_id = ?",
            user_id,
        )
        return None if row is None else RateLimitOverride(int(row[0]), int(row[1]))

    async def all_ratelimits(self) -> dict[str, RateLimitOverride]:
        rows = await self.db.fetchall(
            "SELECT user_id, messages_per_second, burst_count FROM ratelimit_override"
        )
        return {r[0]: RateLimitOverride(int(r[1]), int(r[2])) for r in rows}

    async def set_ratelimit(self, user_id: str, override: RateLimitOverride) -> None:
        async with self.db.transaction("set_ratelimit_override") as txn:
            await txn.execute(
                "INSERT INTO ratelimit_override (user_id, messages_per_second, burst_count)"
                " VALUES (?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET"
                " messages_per_second = excluded.messages_per_second,"
                " burst_count = excluded.burst_count",
                user_id,
                override.messages_per_second,
                override.burst_count,
            )

    async def delete_ratelimit(self, user_id: str) -> None:
        async with self.db.transaction("delete_ratelimit_override") as txn:
            await txn.execute("DELETE FROM ratelimit_override WHERE user_id = ?", user_id)

    # --- experimental features ----------------------------------------------------------------
    async def enabled_features(self, user_id: str) -> set[str]:
        rows = await self.db.fetchall(
            "SELECT feature FROM per_user_experimental_features WHERE user_id = ? AND enabled",
            user_id,
        )
        return {r[0] for r in rows}

    async def set_features(self, user_id: str, features: dict[str, bool]) -> None:
        async with self.db.transaction("set_experimental_features") as txn:
            for feature, enabled in sorted(features.items()):
                await txn.execute(
                    "INSERT INTO per_user_experimental_features (user_id, feature, enabled)"
                    " VALUES (?, ?, ?) ON CONFLICT (user_id, feature) DO UPDATE"
                    " SET enabled = excluded.enabled",
                    user_id,
                    feature,
                    enabled,
                )

    # --- media --------------------------------------------------------------------------------
    async def user_media(
        self, user_id: str, start: int, limit: int, order_by: str, backwards: bool
    ) -> tuple[list[UserMediaRow], int]:
        """A page of the media ``user_id`` uploaded (those with content) and their number."""
        where = " FROM local_media WHERE user_id = ? AND sha256 IS NOT NULL"
        total = int(await self.db.fetchval(f"SELECT COUNT(*){where}", user_id))
        column = MEDIA_ORDER_COLUMNS[order_by]
        direction = "DESC" if backwards else "ASC"
        rows = await self.db.fetchall(
            "SELECT media_id, created_ts, media_type, media_length, upload_name,"
            f" quarantined_by, safe_from_quarantine{where}"
            f" ORDER BY ({column}) IS NULL, {column} {direction}, media_id {direction}"
            " LIMIT ? OFFSET ?",
            user_id,
            limit,
            start,
        )
        media = [
            UserMediaRow(
                r[0],
                int(r[1]),
                r[2],
                None if r[3] is None else int(r[3]),
                r[4],
                r[5],
                bool(r[6]),
            )
            for r in rows
        ]
        return media, total

    # --- rooms and account data -------------------------------------------------------------
    async def memberships(self, user_id: str) -> dict[str, str]:
        rows = await self.db.fetchall(
            "SELECT room_id, membership FROM current_state_events"
            " WHERE state_key = ? AND type = 'm.room.member' ORDER BY room_id",
            user_id,
        )
        return {r[0]: r[1] for r in rows if r[1] is not None}

    async def _member_events(self, sql: str, *args: Any) -> list[tuple[str, str]]:
        """(room_id, membership) of the member events the query selects (json is last)."""
        out = []
        for room_id, text in await self.db.fetchall(sql, *args):
            content = json.loads(text).get("content")
            membership = content.get("membership") if isinstance(content, dict) else None
            if isinstance(membership, str):
                out.append((room_id, membership))
        return out

    async def sent_invite_count(self, user_id: str, from_ts: int) -> int:
        events = await self._member_events(
            "SELECT room_id, json FROM events WHERE sender = ? AND type = 'm.room.member'"
            " AND state_key <> ? AND origin_server_ts >= ? AND rejected_reason IS NULL"
            " AND NOT outlier",
            user_id,
            user_id,
            from_ts,
        )
        return sum(1 for _, membership in events if membership == "invite")

    async def joined_room_count(self, user_id: str, from_ts: int) -> int:
        events = await self._member_events(
            "SELECT room_id, json FROM events WHERE state_key = ? AND type = 'm.room.member'"
            " AND origin_server_ts >= ? AND rejected_reason IS NULL",
            user_id,
            from_ts,
        )
        return len({room_id for room_id, membership in events if membership == "join"})

    async def all_account_data(
        self, user_id: str
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """The user's global account data and per-room account data."""
        global_data: dict[str, Any] = {}
        rooms: dict[str, dict[str, Any]] = {}
        for room_id, data_type, text in await self.db.fetchall(
            "SELECT room_id, type, content FROM account_data WHERE user_id = ?"
            " ORDER BY room_id, type",
            user_id,
        ):
            target = global_data if room_id == "" else rooms.setdefault(room_id, {})
            target[data_type] = json.loads(text)
        return global_data, rooms
