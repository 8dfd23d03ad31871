"""State groups: the state of a room at a point, stored as deltas with periodic snapshots.

A state group is either a *snapshot* (``prev_state_group`` NULL, every entry stored) or a *delta*
against ``prev_state_group`` (only the changed keys stored; ``event_id`` NULL removes a key).
Adding one state event to a room therefore costs one row, whatever the room's size. A chain of
deltas is cut by a new snapshot once it would exceed :data:`MAX_DELTA_CHAIN` links, so reading a
group costs at most one snapshot plus ``MAX_DELTA_CHAIN`` small deltas — O(state size), never a
walk over the room's history. The whole chain is read with one recursive query.

Committed groups never change, so a small LRU of resolved groups is safe to share — it is only
filled from committed reads (a rolled-back SQLite transaction may reuse an ID).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from homeserver.events.event import Event
from homeserver.storage.database import Database, Row, Transaction, placeholders
from homeserver.storage.errors import UnknownStateGroupError
from homeserver.storage.events import EventsStore

StateKey = tuple[str, str]
StateMap = dict[StateKey, str]
#: a delta: key → new event ID, or None to remove the key.
StateDelta = Mapping[StateKey, str | None]

#: the longest chain of deltas before the writer stores a full snapshot instead.
MAX_DELTA_CHAIN = 50


class Reader(Protocol):
    """A ``Database`` or a ``Transaction``: anything that can run a SELECT."""

    async def fetchall(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...


_CHAIN_SQL = """
WITH RECURSIVE chain (id, prev, depth) AS (
    SELECT id, prev_state_group, 0 FROM state_groups WHERE id = ?
    UNION ALL
    SELECT g.id, g.prev_state_group, c.depth + 1
    FROM state_groups g JOIN chain c ON g.id = c.prev
)
SELECT c.depth, e.type, e.state_key, e.event_id
FROM chain c JOIN state_group_entries e ON e.state_group = c.id
ORDER BY c.depth DESC
"""


def apply_delta(state: StateMap, delta: StateDelta) -> StateMap:
    """``state`` with ``delta`` applied (a new dict)."""
    result = dict(state)
    for key, event_id in delta.items():
        if event_id is None:
            result.pop(key, None)
        else:
            result[key] = event_id
    return result


def diff_states(
    old: Mapping[StateKey, str], new: Mapping[StateKey, str]
) -> dict[StateKey, str | None]:
    """The delta that turns ``old`` into ``new``."""
    delta: dict[StateKey, str | None] = {k: v for k, v in new.items() if old.get(k) != v}
    delta.update({k: None for k in old if k not in new})
    return delta


class StateStore:
    def __init__(self, db: Database, events: EventsStore, cache_size: int = 256) -> None:
        self.db = db
        self.events = events
        self._cache: OrderedDict[int, StateMap] = OrderedDict()
        self._cache_size = cache_size

    # --- reads -------------------------------------------------------------------------
    async def get_state_group_ids(
        self, state_group: int, *, txn: Transaction | None = None
    ) -> StateMap:
        """The full state of ``state_group``; raises :class:`UnknownStateGroupError`."""
        cached = self._cache.get(state_group)
        if cached is not None:
            self._cache.move_to_end(state_group)
            return dict(cached)
        state = await self._load(txn or self.db, state_group)
        if txn is None:
            self._remember(state_group, state)
        return dict(state)

    async def get_state_groups_ids(self, state_groups: Iterable[int]) -> dict[int, StateMap]:
        return {g: await self.get_state_group_ids(g) for g in set(state_groups)}

    async def _load(self, reader: Reader, state_group: int) -> StateMap:
        rows = await reader.fetchall(_CHAIN_SQL, state_group)
        if not rows:
            exists = await reader.fetchval("SELECT 1 FROM state_groups WHERE id = ?", state_group)
            if not exists:
                raise UnknownStateGroupError(state_group)
            return {}
        # Rows come snapshot first (deepest), newest delta last, so later rows win.
        state: StateMap = {}
        for _depth, event_type, state_key, event_id in rows:
            if event_id is None:
                state.pop((event_type, state_key), None)
            else:
                state[(event_type, state_key)] = event_id
        return state

    def _remember(self, state_group: int, state: StateMap) -> None:
        self._cache[state_group] = state
        self._cache.move_to_end(state_group)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def get_state_ids_at_event(
        self, event_id: str, *, before: bool = False
    ) -> StateMap | None:
        """The room state after ``event_id`` (``before=True``: just before it).

        After a state event its own entry is included; for a non-state or rejected event the
        state after equals the state before. None for an unknown event or an outlier (whose
        state this server does not know)."""
        groups = await self.get_state_group_for_events([event_id], before=before)
        group = groups.get(event_id)
        return None if group is None else await self.get_state_group_ids(group)

    # --- current state -------------------------------------------------------------------
    async def get_current_state_group(
        self, room_id: str, *, txn: Transaction | None = None
    ) -> int | None:
        """The group the room's current state equals (what the next local event builds on)."""
        group = await (txn or self.db).fetchval(
            "SELECT current_state_group FROM rooms WHERE room_id = ?", room_id
        )
        return None if group is None else int(group)

    async def get_current_state_ids(self, room_id: str) -> StateMap:
        rows = await self.db.fetchall(
            "SELECT type, state_key, event_id FROM current_state_events WHERE room_id = ?",
            room_id,
        )
        return {(t, sk): eid for t, sk, eid in rows}

    async def get_current_state_event_id(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> str | None:
        return await self.db.fetchval(
            "SELECT event_id FROM current_state_events"
            " WHERE room_id = ? AND type = ? AND state_key = ?",
            room_id,
            event_type,
            state_key,
        )

    async def get_current_state_event(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> Event | None:
        event_id = await self.get_current_state_event_id(room_id, event_type, state_key)
        return None if event_id is None else await self.events.get_event(event_id)

    async def get_current_members(self, room_id: str, membership: str = "join") -> list[str]:
        """User IDs whose current membership in ``room_id`` is ``membership``."""
        rows = await self.db.fetchall(
            "SELECT state_key FROM current_state_events"
            " WHERE room_id = ? AND type = 'm.room.member' AND membership = ?",
            room_id,
            membership,
        )
        return sorted(r[0] for r in rows)

    async def get_rooms_for_user(self, user_id: str, membership: str = "join") -> list[str]:
        rows = await self.db.fetchall(
            "SELECT room_id FROM current_state_events"
            " WHERE state_key = ? AND type = 'm.room.member' AND membership = ?",
            user_id,
            membership,
        )
        return sorted(r[0] for r in rows)

    async def count_group_rows(self, state_group: int) -> int:
        """Rows stored for one group itself (its delta or snapshot) — for tests and metrics."""
        return int(
            await self.db.fetchval(
                "SELECT COUNT(*) FROM state_group_entries WHERE state_group = ?", state_group
            )
        )

    async def get_state_group_for_events(
        self, event_ids: Iterable[str], *, before: bool = False
    ) -> dict[str, int]:
        """``event_id → state group`` after (or before) each event; outliers are left out."""
        ids = list(set(event_ids))
        if not ids:
            return {}
        column = "state_group_before" if before else "state_group_after"
        rows = await self.db.fetchall(
            f"SELECT event_id, {column} FROM event_to_state_groups"
            f" WHERE event_id IN ({placeholders(len(ids))})",
            *ids,
        )
        return {event_id: int(group) for event_id, group in rows}

    # --- writes (inside the caller's transaction) --------------------------------------
    async def create_state_group_txn(
        self,
        txn: Transaction,
        room_id: str,
        prev_group: int | None,
        delta: StateDelta,
        *,
        event_id: str | None = None,
    ) -> int:
        """A new group equal to ``prev_group`` (None: empty) plus ``delta``; returns its ID.

        Stores only ``delta`` unless the chain would grow past :data:`MAX_DELTA_CHAIN`, in which
        case the full state is written as a snapshot."""
        chain_length = -1
        if prev_group is not None:
            found = await txn.fetchval(
                "SELECT chain_length FROM state_groups WHERE id = ?", prev_group
            )
            if found is None:
                raise UnknownStateGroupError(prev_group)
            chain_length = int(found)
        if prev_group is None or chain_length + 1 > MAX_DELTA_CHAIN:
            base = {} if prev_group is None else await self.get_state_group_ids(prev_group, txn=txn)
            entries: StateDelta = apply_delta(base, delta)
            stored_prev, new_length = None, 0
        else:
            entries, stored_prev, new_length = delta, prev_group, chain_length + 1
        group = await txn.fetchval(
            "INSERT INTO state_groups (room_id, event_id, prev_state_group, chain_length)"
            " VALUES (?, ?, ?, ?) RETURNING id",
            room_id,
            event_id,
            stored_prev,
            new_length,
        )
        await txn.executemany(
            "INSERT INTO state_group_entries (state_group, type, state_key, event_id)"
            " VALUES (?, ?, ?, ?)",
            [(group, t, sk, eid) for (t, sk), eid in entries.items()],
        )
        return int(group)
