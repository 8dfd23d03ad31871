"""Queries history visibility needs: a user's own membership events in a room, and which state
group each event of a stretch of a room's timeline was sent in, without one row per event.

The state group an event was sent in never changes once it is stored, so it is cached (an LRU,
as Synapse caches ``_get_state_group_for_event``). The key includes the event's stream position:
an event purged and stored again gets a new position, so a stale entry is never read.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from homeserver.storage.database import Database

_ACCEPTED = "e.outlier = FALSE AND e.rejected_reason IS NULL AND e.soft_failed = FALSE"


@dataclass(frozen=True, slots=True)
class StateRun:
    """From stream position ``start`` on (up to the next run), events were sent in the state
    ``state_group`` (the state just before each of them)."""

    start: int
    state_group: int


class VisibilityStore:
    def __init__(self, db: Database, cache_size: int = 50_000) -> None:
        self.db = db
        self._groups: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._cache_size = cache_size

    def clear_cache(self) -> None:
        self._groups.clear()

    async def get_state_groups_before(
        self, room_id: str, events: Sequence[tuple[str, int]]
    ) -> dict[str, int]:
        """``event_id → the state group just before it`` for ``events`` of ``room_id``, given
        as ``(event_id, stream_ordering)``; events without a state group are left out."""
        found: dict[str, int] = {}
        missing: list[tuple[str, int]] = []
        for key in events:
            group = self._groups.get(key)
            if group is None:
                missing.append(key)
            else:
                self._groups.move_to_end(key)
                found[key[0]] = group
        if not missing:
            return found
        positions = [position for _, position in missing]
        runs = await self.get_state_runs(room_id, min(positions), max(positions))
        starts = [run.start for run in runs]
        for key in missing:
            index = bisect_right(starts, key[1]) - 1
            if index >= 0:
                found[key[0]] = self._groups[key] = runs[index].state_group
        while len(self._groups) > self._cache_size:
            self._groups.popitem(last=False)
        return found

    async def get_user_memberships(self, room_id: str, user_id: str) -> list[tuple[str, int]]:
        """``(event_id, stream_ordering)`` of the user's own membership events in ``room_id``,
        oldest first."""
        rows = await self.db.fetchall(
            "SELECT e.event_id, e.stream_ordering FROM events e"
            f" WHERE e.state_key = ? AND e.type = 'm.room.member' AND e.room_id = ? AND {_ACCEPTED}"
            " ORDER BY e.stream_ordering",
            user_id,
            room_id,
        )
        return [(r[0], int(r[1])) for r in rows]

    async def get_state_runs(self, room_id: str, low: int, high: int) -> list[StateRun]:
        """The state-before groups of the room's events with stream positions in
        ``[low, high]``, as runs in stream order: only the rows where the group changes leave
        the database (a thousand messages between two state changes are one row)."""
        rows = await self.db.fetchall(
            "SELECT stream_ordering, state_group_before FROM ("
            " SELECT e.stream_ordering, g.state_group_before,"
            " LAG(g.state_group_before) OVER (ORDER BY e.stream_ordering) AS previous"
            " FROM events e JOIN event_to_state_groups g ON g.event_id = e.event_id"
            " WHERE e.room_id = ? AND e.stream_ordering >= ? AND e.stream_ordering <= ?"
            ") runs WHERE previous IS NULL OR previous <> state_group_before"
            " ORDER BY stream_ordering",
            room_id,
            low,
            high,
        )
        return [StateRun(int(r[0]), int(r[1])) for r in rows]
