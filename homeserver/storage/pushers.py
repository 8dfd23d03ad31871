"""Pushers (``/pushers``, ``/pushers/set``) and their durable delivery queue (``push_outbox``),
with each pusher's backoff kept in its row so that a restart honours it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Transaction, placeholders

_COLUMNS = (
    "id, user_id, kind, app_id, pushkey, app_display_name, device_display_name, profile_tag,"
    " lang, data, pushkey_ts, failing_since, retry_last_ts, retry_interval_ms"
)
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Pusher:
    id: int
    user_id: str
    kind: str
    app_id: str
    pushkey: str
    app_display_name: str
    device_display_name: str
    profile_tag: str | None
    lang: str
    data: dict[str, Any]
    pushkey_ts: int
    failing_since: int | None = None
    retry_last_ts: int = 0
    retry_interval_ms: int = 0

    @property
    def next_attempt_ts(self) -> int:
        return self.retry_last_ts + self.retry_interval_ms


@dataclass(frozen=True, slots=True)
class PushJob:
    id: int
    pusher_id: int
    user_id: str
    event_id: str
    room_id: str
    actions: list[Any]
    created_ts: int


def _pusher(row: Any) -> Pusher:
    return Pusher(
        int(row[0]),
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        json.loads(row[9]),
        int(row[10]),
        None if row[11] is None else int(row[11]),
        int(row[12]),
        int(row[13]),
    )


async def delete_user_pushers_txn(txn: Transaction, user_id: str) -> int:
    """Every pusher of ``user_id`` and its queue (account deactivation)."""
    return await _delete_txn(txn, "user_id = ?", user_id)


async def _delete_txn(txn: Transaction, where: str, *args: Any) -> int:
    ids = [r[0] for r in await txn.fetchall(f"SELECT id FROM pushers WHERE {where}", *args)]
    if not ids:
        return 0
    await txn.execute(
        f"DELETE FROM push_outbox WHERE pusher_id IN ({placeholders(len(ids))})", *ids
    )
    await txn.execute(f"DELETE FROM pushers WHERE id IN ({placeholders(len(ids))})", *ids)
    return len(ids)


class PushersStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_pushers(self, user_id: str) -> list[Pusher]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM pushers WHERE user_id = ? ORDER BY id", user_id
        )
        return [_pusher(r) for r in rows]

    async def get_pusher(self, pusher_id: int) -> Pusher | None:
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM pushers WHERE id = ?", pusher_id)
        return None if row is None else _pusher(row)

    async def get_pushers_of_users(self, user_ids: Sequence[str]) -> dict[str, list[Pusher]]:
        found: dict[str, list[Pusher]] = {}
        ids = list(dict.fromkeys(user_ids))
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            rows = await self.db.fetchall(
                f"SELECT {_COLUMNS} FROM pushers WHERE user_id IN ({placeholders(len(chunk))})",
                *chunk,
            )
            for row in rows:
                pusher = _pusher(row)
                found.setdefault(pusher.user_id, []).append(pusher)
        return found

    async def set_pusher(self, pusher: Pusher, *, append: bool) -> None:
        """Add or replace the user's pusher for (app_id, pushkey). Without ``append`` the same
        (app_id, pushkey) is taken from every other user (spec: ``append`` false)."""
        async with self.db.transaction("set_pusher") as txn:
            if not append:
                await self._delete_txn(
                    txn,
                    "app_id = ? AND pushkey = ? AND user_id <> ?",
                    pusher.app_id,
                    pusher.pushkey,
                    pusher.user_id,
                )
            await txn.execute(
                "INSERT INTO pushers (user_id, kind, app_id, pushkey, app_display_name,"
                " device_display_name, profile_tag, lang, data, pushkey_ts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (app_id, pushkey, user_id) DO UPDATE SET kind = excluded.kind,"
                " app_display_name = excluded.app_display_name,"
                " device_display_name = excluded.device_display_name,"
                " profile_tag = excluded.profile_tag, lang = excluded.lang, data = excluded.data,"
                " pushkey_ts = excluded.pushkey_ts",
                pusher.user_id,
                pusher.kind,
                pusher.app_id,
                pusher.pushkey,
                pusher.app_display_name,
                pusher.device_display_name,
                pusher.profile_tag,
                pusher.lang,
                json.dumps(pusher.data),
                pusher.pushkey_ts,
            )

    async def delete_pusher(self, user_id: str, app_id: str, pushkey: str) -> bool:
        async with self.db.transaction("delete_pusher") as txn:
            return (
                await self._delete_txn(
                    txn, "app_id = ? AND pushkey = ? AND user_id = ?", app_id, pushkey, user_id
                )
                > 0
            )

    async def delete_pushers_by_pushkey(self, app_id: str, pushkeys: Sequence[str]) -> int:
        """A gateway rejected these pushkeys: remove the pushers (as Synapse)."""
        if not pushkeys:
            return 0
        async with self.db.transaction("reject_pushkeys") as txn:
            return await self._delete_txn(
                txn,
                f"app_id = ? AND pushkey IN ({placeholders(len(pushkeys))})",
                app_id,
                *pushkeys,
            )

    @staticmethod
    async def _delete_txn(txn: Transaction, where: str, *args: Any) -> int:
        return await _delete_txn(txn, where, *args)

    # --- the delivery queue -----------------------------------------------------------------
    async def enqueue_txn(self, txn: Transaction, jobs: Sequence[PushJob]) -> None:
        if not jobs:
            return
        await txn.executemany(
            "INSERT INTO push_outbox (pusher_id, user_id, event_id, room_id, actions, created_ts)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                (j.pusher_id, j.user_id, j.event_id, j.room_id, json.dumps(j.actions), j.created_ts)
                for j in jobs
            ],
        )

    async def pushers_with_jobs(self) -> list[int]:
        rows = await self.db.fetchall("SELECT DISTINCT pusher_id FROM push_outbox")
        return [int(r[0]) for r in rows]

    async def head(self, pusher_id: int, limit: int) -> list[PushJob]:
        rows = await self.db.fetchall(
            "SELECT id, pusher_id, user_id, event_id, room_id, actions, created_ts"
            " FROM push_outbox WHERE pusher_id = ? ORDER BY id LIMIT ?",
            pusher_id,
            limit,
        )
        return [
            PushJob(int(r[0]), int(r[1]), r[2], r[3], r[4], json.loads(r[5]), int(r[6]))
            for r in rows
        ]

    async def delete_job(self, job_id: int) -> None:
        async with self.db.transaction("push_job_done") as txn:
            await txn.execute("DELETE FROM push_outbox WHERE id = ?", job_id)

    async def set_backoff(
        self, pusher_id: int, failing_since: int | None, retry_last_ts: int, interval_ms: int
    ) -> None:
        async with self.db.transaction("pusher_backoff") as txn:
            await txn.execute(
                "UPDATE pushers SET failing_since = ?, retry_last_ts = ?, retry_interval_ms = ?"
                " WHERE id = ?",
                failing_since,
                retry_last_ts,
                interval_ms,
                pusher_id,
            )
