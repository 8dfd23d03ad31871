"""Notifications: the push actions found for each (event, local user), the evaluator's position
on the events stream, and the reads behind unread counts and ``GET /notifications``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Transaction, placeholders
from homeserver.storage.streams import get_stream_position

#: The stream position row of the evaluator (migration 023).
PUSH_EVALUATED = "push_evaluated"
#: ``thread_id`` of an event outside any thread (the spec's name for the main timeline).
MAIN_THREAD = "main"
#: Receipts that mark a user's reading position (spec: both reset notification counts).
READ_RECEIPTS = ("m.read", "m.read.private")
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class PushAction:
    event_id: str
    room_id: str
    user_id: str
    thread_id: str
    stream_ordering: int
    highlight: bool
    actions: list[Any]
    ts: int


@dataclass(frozen=True, slots=True)
class Counts:
    notifications: int = 0
    highlights: int = 0


@dataclass(frozen=True, slots=True)
class RoomCounts:
    """A room's unread counts for one user: all threads together, the main timeline, and each
    thread (root event ID → counts, non-zero only)."""

    total: Counts
    main: Counts
    threads: dict[str, Counts]


class PushActionsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- the evaluator's position ----------------------------------------------------------
    async def get_evaluated_position(self) -> int:
        return await get_stream_position(self.db, PUSH_EVALUATED)

    async def advance_evaluated_txn(self, txn: Transaction, old: int, new: int) -> bool:
        """Move the position from ``old`` to ``new``; False when another process moved it first
        (the caller's transaction must then be rolled back)."""
        changed = await txn.execute(
            "UPDATE stream_positions SET position = ? WHERE stream_name = ? AND position = ?",
            new,
            PUSH_EVALUATED,
            old,
        )
        return changed == 1

    async def get_evaluable_event_ids(self, after: int, upto: int, limit: int) -> list[str]:
        """Events of rooms' timelines (not outliers, not rejected) in ``(after, upto]``."""
        rows = await self.db.indexed.fetchall(
            "SELECT event_id FROM events WHERE stream_ordering > ? AND stream_ordering <= ?"
            " AND NOT outlier AND rejected_reason IS NULL ORDER BY stream_ordering LIMIT ?",
            after,
            upto,
            limit,
        )
        return [r[0] for r in rows]

    async def insert_actions_txn(self, txn: Transaction, actions: Sequence[PushAction]) -> None:
        if not actions:
            return
        await txn.executemany(
            "INSERT INTO event_push_actions (event_id, room_id, user_id, thread_id,"
            " stream_ordering, highlight, actions, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (user_id, event_id) DO NOTHING",
            [
                (
                    a.event_id,
                    a.room_id,
                    a.user_id,
                    a.thread_id,
                    a.stream_ordering,
                    a.highlight,
                    json.dumps(a.actions),
                    a.ts,
                )
                for a in actions
            ],
        )

    # --- unread counts -----------------------------------------------------------------------
    async def _membership_positions(self, user_id: str, room_ids: Sequence[str]) -> dict[str, int]:
        """room → the stream ordering of the user's current membership event there."""
        found: dict[str, int] = {}
        for start in range(0, len(room_ids), _CHUNK):
            chunk = list(room_ids[start : start + _CHUNK])
            rows = await self.db.fetchall(
                "SELECT c.room_id, e.stream_ordering FROM current_state_events c"
                " JOIN events e ON e.event_id = c.event_id"
                " WHERE c.type = 'm.room.member' AND c.state_key = ?"
                f" AND c.room_id IN ({placeholders(len(chunk))})",
                user_id,
                *chunk,
            )
            for room_id, ordering in rows:
                found[room_id] = int(ordering)
        return found

    async def _receipt_positions(
        self, user_id: str, room_ids: Sequence[str]
    ) -> dict[str, dict[str, int]]:
        """room → receipt thread ('' unthreaded, 'main', a root) → the stream ordering of the
        newest event the user marked read there."""
        found: dict[str, dict[str, int]] = {}
        for start in range(0, len(room_ids), _CHUNK):
            chunk = list(room_ids[start : start + _CHUNK])
            rows = await self.db.fetchall(
                "SELECT r.room_id, r.thread_id, MAX(e.stream_ordering) FROM receipts r"
                " JOIN events e ON e.event_id = r.event_id"
                f" WHERE r.user_id = ? AND r.room_id IN ({placeholders(len(chunk))})"
                f" AND r.receipt_type IN ({placeholders(len(READ_RECEIPTS))})"
                " GROUP BY r.room_id, r.thread_id",
                user_id,
                *chunk,
                *READ_RECEIPTS,
            )
            for room_id, thread_id, ordering in rows:
                found.setdefault(room_id, {})[thread_id or ""] = int(ordering)
        return found

    async def get_room_counts(self, user_id: str, room_ids: Sequence[str]) -> dict[str, RoomCounts]:
        """Unread counts per room: the notifications after the user's read receipts. An
        unthreaded receipt covers every thread; a threaded one (``main`` or a thread root) only
        its thread, from where it is further on."""
        ids = list(dict.fromkeys(room_ids))
        receipts = await self._receipt_positions(user_id, ids)
        unread_from = await self._membership_positions(user_id, ids)
        result: dict[str, RoomCounts] = {}
        for room_id in ids:
            marks = receipts.get(room_id, {})
            # Without an unthreaded receipt, counting starts at the user's membership (their
            # join): what notified them before it — their own invite — is not unread there
            # (Synapse's floor too).
            floor = marks.get("", unread_from.get(room_id, 0))
            rows = await self.db.fetchall(
                "SELECT thread_id, stream_ordering, highlight FROM event_push_actions"
                " WHERE user_id = ? AND room_id = ? AND stream_ordering > ?",
                user_id,
                room_id,
                floor,
            )
            per_thread: dict[str, list[int]] = {}
            for thread_id, ordering, highlight in rows:
                if ordering <= marks.get(thread_id, floor):
                    continue
                tally = per_thread.setdefault(thread_id, [0, 0])
                tally[0] += 1
                tally[1] += 1 if highlight else 0
            main = per_thread.pop(MAIN_THREAD, [0, 0])
            threads = {t: Counts(n, h) for t, (n, h) in per_thread.items()}
            total = Counts(
                main[0] + sum(c.notifications for c in threads.values()),
                main[1] + sum(c.highlights for c in threads.values()),
            )
            result[room_id] = RoomCounts(total, Counts(main[0], main[1]), threads)
        return result

    async def count_rooms_with_unread(self, user_id: str) -> int:
        """The push ``counts.unread`` badge: rooms with unread notifications (Synapse's default,
        ``push.group_unread_count_by_room``)."""
        rows = await self.db.fetchall(
            "SELECT DISTINCT room_id FROM event_push_actions WHERE user_id = ?", user_id
        )
        rooms = [r[0] for r in rows]
        counts = await self.get_room_counts(user_id, rooms)
        return sum(1 for c in counts.values() if c.total.notifications > 0)

    async def rooms_with_actions_between(
        self, user_id: str, room_ids: Sequence[str], after: int, upto: int
    ) -> set[str]:
        """Rooms among ``room_ids`` where the evaluator found notifications for the user in
        ``(after, upto]`` (their counts may have moved since a /sync token)."""
        if after >= upto:
            return set()
        rows = await self.db.fetchall(
            "SELECT DISTINCT room_id FROM event_push_actions WHERE user_id = ?"
            " AND stream_ordering > ? AND stream_ordering <= ?",
            user_id,
            after,
            upto,
        )
        wanted = set(room_ids)
        return {r[0] for r in rows if r[0] in wanted}

    # --- GET /notifications ---------------------------------------------------------------
    async def get_notifications(
        self, user_id: str, before: int | None, limit: int, only_highlight: bool
    ) -> list[PushAction]:
        """The user's notifications, newest first, below stream ordering ``before``."""
        sql = (
            "SELECT event_id, room_id, user_id, thread_id, stream_ordering, highlight, actions, ts"
            " FROM event_push_actions WHERE user_id = ? AND stream_ordering < ?"
        )
        if only_highlight:
            sql += " AND highlight"
        rows = await self.db.fetchall(
            sql + " ORDER BY stream_ordering DESC LIMIT ?",
            user_id,
            2**63 - 1 if before is None else before,
            limit,
        )
        return [
            PushAction(r[0], r[1], r[2], r[3], int(r[4]), bool(r[5]), json.loads(r[6]), int(r[7]))
            for r in rows
        ]

    async def get_read_positions(self, user_id: str, room_ids: Sequence[str]) -> dict[str, int]:
        """room → the stream ordering of the user's unthreaded read receipt there."""
        marks = await self._receipt_positions(user_id, list(dict.fromkeys(room_ids)))
        return {room: m.get("", 0) for room, m in marks.items()}
