"""Storage for using rooms from the client API: transaction IDs of idempotent sends, forgotten
rooms, applied redactions, and the timeline reads behind /messages and /context.

Timeline reads go by stream ordering (the order events were committed here), leaving out
outliers, rejected and soft-failed events, which are not part of the room's timeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction, placeholders
from homeserver.storage.redaction_apply import mark_redacted_txn

_TIMELINE = "outlier = FALSE AND rejected_reason IS NULL AND soft_failed = FALSE"


@dataclass(frozen=True, slots=True)
class TimelineRow:
    event_id: str
    stream_ordering: int
    type: str
    sender: str


class RoomUseStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- transaction IDs -------------------------------------------------------------------
    async def get_txn_event_id(
        self,
        user_id: str,
        scope: str,
        room_id: str,
        endpoint: str,
        txn_id: str,
        *,
        txn: Transaction | None = None,
    ) -> str | None:
        return await (txn or self.db).fetchval(
            "SELECT event_id FROM event_txn_ids WHERE user_id = ? AND scope = ?"
            " AND room_id = ? AND endpoint = ? AND txn_id = ?",
            user_id,
            scope,
            room_id,
            endpoint,
            txn_id,
        )

    async def add_txn_id_txn(
        self,
        txn: Transaction,
        user_id: str,
        scope: str,
        room_id: str,
        endpoint: str,
        txn_id: str,
        event_id: str,
        ts: int,
    ) -> None:
        await txn.execute(
            "INSERT INTO event_txn_ids"
            " (user_id, scope, room_id, endpoint, txn_id, event_id, created_ts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            user_id,
            scope,
            room_id,
            endpoint,
            txn_id,
            event_id,
            ts,
        )

    async def get_transaction_ids(
        self, event_ids: Iterable[str], user_id: str, scope: str
    ) -> dict[str, str]:
        """``event_id → txn_id`` for events this user's device (``scope``) sent (for
        ``unsigned.transaction_id`` in /sync)."""
        ids = list(set(event_ids))
        if not ids:
            return {}
        rows = await self.db.fetchall(
            "SELECT event_id, txn_id FROM event_txn_ids WHERE user_id = ? AND scope = ?"
            f" AND event_id IN ({placeholders(len(ids))})",
            user_id,
            scope,
            *ids,
        )
        return {r[0]: r[1] for r in rows}

    # --- forgotten rooms -------------------------------------------------------------------
    async def forget(self, user_id: str, room_id: str, ts: int) -> None:
        async with self.db.transaction("forget_room") as txn:
            await txn.execute(
                "INSERT INTO forgotten_rooms (user_id, room_id, forgotten_ts) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id, room_id) DO NOTHING",
                user_id,
                room_id,
                ts,
            )

    async def unforget_txn(self, txn: Transaction, user_id: str, room_id: str) -> None:
        await txn.execute(
            "DELETE FROM forgotten_rooms WHERE user_id = ? AND room_id = ?", user_id, room_id
        )

    async def unforget_many_txn(
        self, txn: Transaction, user_ids: Sequence[str], room_id: str
    ) -> None:
        """:meth:`unforget_txn` for many users (a batch of joins)."""
        for start in range(0, len(user_ids), 500):
            chunk = user_ids[start : start + 500]
            await txn.execute(
                "DELETE FROM forgotten_rooms"
                f" WHERE room_id = ? AND user_id IN ({placeholders(len(chunk))})",
                room_id,
                *chunk,
            )

    async def is_forgotten(self, user_id: str, room_id: str) -> bool:
        return bool(
            await self.db.fetchval(
                "SELECT 1 FROM forgotten_rooms WHERE user_id = ? AND room_id = ?",
                user_id,
                room_id,
            )
        )

    async def get_forgotten_room_ids(self, user_id: str) -> set[str]:
        rows = await self.db.fetchall(
            "SELECT room_id FROM forgotten_rooms WHERE user_id = ?", user_id
        )
        return {r[0] for r in rows}

    # --- redactions ------------------------------------------------------------------------
    async def add_redaction_txn(
        self, txn: Transaction, event_id: str, redacts: str, room_id: str
    ) -> None:
        await txn.execute(
            "INSERT INTO redactions (event_id, redacts, room_id) VALUES (?, ?, ?)"
            " ON CONFLICT (event_id) DO NOTHING",
            event_id,
            redacts,
            room_id,
        )

    async def mark_redacted_txn(self, txn: Transaction, event_id: str) -> bool:
        """Flag ``event_id`` as redacted; the caller invalidates the event cache after commit."""
        return await mark_redacted_txn(txn, event_id)

    async def get_redaction_ids(self, targets: Iterable[str]) -> dict[str, str]:
        """``target → the earliest redaction event`` among ``targets``."""
        ids = list(set(targets))
        if not ids:
            return {}
        rows = await self.db.fetchall(
            "SELECT r.redacts, r.event_id FROM redactions r JOIN events e"
            " ON e.event_id = r.event_id"
            f" WHERE r.redacts IN ({placeholders(len(ids))}) ORDER BY e.stream_ordering DESC",
            *ids,
        )
        # Rows come newest first, so the earliest redaction of each target wins.
        return {target: event_id for target, event_id in rows}

    # --- timeline --------------------------------------------------------------------------
    async def get_timeline_rows(
        self, room_id: str, *, after: int, up_to: int, backwards: bool, limit: int
    ) -> list[TimelineRow]:
        """Timeline events with ``after < stream_ordering <= up_to``: the newest ``limit`` of
        them when ``backwards`` (newest first), else the oldest (oldest first)."""
        order = "DESC" if backwards else "ASC"
        rows = await self.db.fetchall(
            "SELECT event_id, stream_ordering, type, sender FROM events"
            f" WHERE room_id = ? AND stream_ordering > ? AND stream_ordering <= ? AND {_TIMELINE}"
            f" ORDER BY stream_ordering {order} LIMIT ?",
            room_id,
            after,
            up_to,
            limit,
        )
        return [TimelineRow(r[0], int(r[1]), r[2], r[3]) for r in rows]

    async def get_last_event_id_at(self, room_id: str, stream_ordering: int) -> str | None:
        """The room's newest timeline event at or before ``stream_ordering``."""
        return await self.db.fetchval(
            "SELECT event_id FROM events"
            f" WHERE room_id = ? AND stream_ordering <= ? AND {_TIMELINE}"
            " ORDER BY stream_ordering DESC LIMIT 1",
            room_id,
            stream_ordering,
        )

    async def get_current_state_ids_txn(
        self, txn: Transaction, room_id: str, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        """Current state entries among ``keys``, read inside ``txn`` (after locking the room)."""
        found: dict[tuple[str, str], str] = {}
        for event_type, state_key in keys:
            event_id = await txn.fetchval(
                "SELECT event_id FROM current_state_events"
                " WHERE room_id = ? AND type = ? AND state_key = ?",
                room_id,
                event_type,
                state_key,
            )
            if event_id is not None:
                found[(event_type, state_key)] = event_id
        return found

    async def get_room_status_txn(self, txn: Transaction, room_id: str) -> str | None:
        return await txn.fetchval("SELECT status FROM rooms WHERE room_id = ?", room_id)
