"""Reads and writes behind the admin API's per-user tabs (Synapse's ``rest/admin/users.py``,
``devices.py``, ``experimental_features.py``): devices with where they were last seen,
memberships, account data, invite and join counts, rate-limit overrides, experimental
features, shadow bans, suspensions, the cross-signing replacement allowance and the progress
of user redactions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database


@dataclass(frozen=True, slots=True)
class DeviceRow:
    user_id: str
    device_id: str
    display_name: str | None
    last_seen_ts: int | None
    last_seen_ip: str | None
    last_seen_user_agent: str | None


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

    # --- suspension ---------------------------------------------------------------------------
    async def set_suspended(self, user_id: str, suspended: bool) -> bool:
        async with self.db.transaction("set_suspended") as txn:
            changed = await txn.execute(
                "UPDATE users SET suspended = ? WHERE user_id = ?", suspended, user_id
            )
        return changed == 1

    async def suspended_users(self) -> set[str]:
        rows = await self.db.fetchall("SELECT user_id FROM users WHERE suspended")
        return {r[0] for r in rows}

    # --- cross-signing replacement --------------------------------------------------------------
    async def allow_cross_signing_replacement(self, user_id: str, before_ms: int) -> bool:
        """Let the user replace their master key without UIA until ``before_ms``; False if
        they have no master key (Synapse then answers 404)."""
        async with self.db.transaction("allow_cross_signing_replacement") as txn:
            has_master = await txn.fetchval(
                "SELECT 1 FROM e2e_cross_signing_keys WHERE user_id = ? AND key_type = 'master'",
                user_id,
            )
            if has_master is None:
                return False
            await txn.execute(
                "UPDATE users SET cross_signing_replaceable_before_ms = ? WHERE user_id = ?",
                before_ms,
                user_id,
            )
        return True

    async def cross_signing_replaceable_before(self, user_id: str) -> int | None:
        value = await self.db.fetchval(
            "SELECT cross_signing_replaceable_before_ms FROM users WHERE user_id = ?", user_id
        )
        return None if value is None else int(value)

    # --- user redactions -------------------------------------------------------------------------
    async def create_redaction(
        self, redact_id: str, user_id: str, now: int, instance_name: str = ""
    ) -> None:
        async with self.db.transaction("create_user_redaction") as txn:
            await txn.execute(
                "INSERT INTO user_redactions (redact_id, user_id, status, created_ts,"
                " instance_name) VALUES (?, ?, 'scheduled', ?, ?)",
                redact_id,
                user_id,
                now,
                instance_name,
            )

    async def update_redaction(
        self,
        redact_id: str,
        status: str,
        failed: dict[str, str] | None = None,
        error: str | None = None,
    ) -> None:
        async with self.db.transaction("update_user_redaction") as txn:
            await txn.execute(
                "UPDATE user_redactions SET status = ?, failed_redactions = ?, error = ?"
                " WHERE redact_id = ?",
                status,
                json.dumps(failed or {}),
                error,
                redact_id,
            )

    async def get_redaction(self, redact_id: str) -> tuple[str, dict[str, str], str | None] | None:
        row = await self.db.fetchone(
            "SELECT status, failed_redactions, error FROM user_redactions WHERE redact_id = ?",
            redact_id,
        )
        return None if row is None else (row[0], json.loads(row[1]), row[2])

    async def unfinished_redaction_runners(self) -> list[str]:
        """The instances running (or that were running) unfinished requests."""
        rows = await self.db.fetchall(
            "SELECT DISTINCT instance_name FROM user_redactions"
            " WHERE status IN ('scheduled', 'active')"
        )
        return [str(row[0]) for row in rows]

    async def fail_unfinished_redactions(self, instance_name: str) -> int:
        """Requests the stopped process ``instance_name`` left unfinished are failed (not
        resumed)."""
        async with self.db.transaction("fail_unfinished_user_redactions") as txn:
            return await txn.execute(
                "UPDATE user_redactions SET status = 'failed',"
                " error = 'interrupted by a restart' WHERE status IN ('scheduled', 'active')"
                " AND instance_name = ?",
                instance_name,
            )

    async def events_to_redact(
        self, user_id: str, room_id: str, before_ts: int | None, after_ts: int | None
    ) -> list[tuple[str, str, str]]:
        """(event_id, type, json) of the user's messages, encrypted messages and member events
        in the room (Synapse's choice), not yet redacted, oldest first."""
        sql = (
            "SELECT event_id, type, json FROM events WHERE sender = ? AND room_id = ?"
            " AND type IN ('m.room.member', 'm.room.message', 'm.room.encrypted')"
            " AND NOT redacted AND rejected_reason IS NULL AND NOT outlier"
        )
        args: list[Any] = [user_id, room_id]
        if before_ts is not None:
            sql += " AND origin_server_ts <= ?"
            args.append(before_ts)
        if after_ts is not None:
            sql += " AND origin_server_ts >= ?"
            args.append(after_ts)
        rows = await self.db.fetchall(sql + " ORDER BY stream_ordering", *args)
        return [(r[0], r[1], r[2]) for r in rows]

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
