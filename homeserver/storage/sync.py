"""Queries /sync needs over the events table: a room's timeline between two stream positions,
which rooms moved, and a user's own membership changes across rooms.

Only accepted, non-outlier events are part of a timeline (outliers have no place in the room's
stream; rejected and soft-failed events are never shown to clients).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from homeserver.events.event import Event
from homeserver.storage.database import Database, placeholders
from homeserver.storage.events import EventsStore

_CHUNK = 500
_VISIBLE = "outlier = FALSE AND rejected_reason IS NULL AND soft_failed = FALSE"


@dataclass(frozen=True, slots=True)
class MembershipChange:
    room_id: str
    event_id: str
    stream_ordering: int


class SyncStore:
    def __init__(self, db: Database, events: EventsStore) -> None:
        self.db = db
        self.events = events

    async def get_room_events_desc(
        self, room_id: str, after: int, upto: int, limit: int
    ) -> list[Event]:
        """Up to ``limit`` events of ``room_id`` with stream ordering in ``(after, upto]``,
        newest first."""
        if limit <= 0:
            return []
        rows = await self.db.fetchall(
            f"SELECT event_id FROM events WHERE room_id = ? AND {_VISIBLE}"
            " AND stream_ordering > ? AND stream_ordering <= ?"
            " ORDER BY stream_ordering DESC LIMIT ?",
            room_id,
            after,
            upto,
            limit,
        )
        ids = [r[0] for r in rows]
        found = await self.events.get_events(ids)
        return [found[i] for i in ids if i in found]

    async def get_rooms_changed(self, room_ids: Sequence[str], after: int, upto: int) -> set[str]:
        """Which of ``room_ids`` have an event in ``(after, upto]``."""
        changed: set[str] = set()
        ids = list(dict.fromkeys(room_ids))
        if after >= upto:
            return changed
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            rows = await self.db.fetchall(
                "SELECT DISTINCT room_id FROM events"
                f" WHERE room_id IN ({placeholders(len(chunk))}) AND {_VISIBLE}"
                " AND stream_ordering > ? AND stream_ordering <= ?",
                *chunk,
                after,
                upto,
            )
            changed.update(r[0] for r in rows)
        return changed

    async def get_membership_changes(
        self, user_id: str, after: int, upto: int
    ) -> list[MembershipChange]:
        """The user's own membership events in ``(after, upto]``, oldest first."""
        rows = await self.db.fetchall(
            "SELECT room_id, event_id, stream_ordering FROM events"
            f" WHERE state_key = ? AND type = 'm.room.member' AND {_VISIBLE}"
            " AND stream_ordering > ? AND stream_ordering <= ? ORDER BY stream_ordering",
            user_id,
            after,
            upto,
        )
        return [MembershipChange(r[0], r[1], int(r[2])) for r in rows]

    async def get_last_event_id_at(self, room_id: str, upto: int) -> str | None:
        """The room's newest event at stream position ``upto`` (its state is the room's
        state at that position)."""
        return await self.db.fetchval(
            f"SELECT event_id FROM events WHERE room_id = ? AND {_VISIBLE}"
            " AND stream_ordering <= ? ORDER BY stream_ordering DESC LIMIT 1",
            room_id,
            upto,
        )
