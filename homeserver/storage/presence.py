"""Presence: the newest state of each user we know (local ones set here, remote ones told by
their server), stamped with a position on the presence stream so /sync sends only the users
whose presence moved since a token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Transaction
from homeserver.storage.streams import PRESENCE_STREAM, advance_stream_txn, get_stream_position

OFFLINE = "offline"

_COLUMNS = (
    "user_id, state, status_msg, last_active_ts, last_federation_update_ts, currently_active,"
    " stream_id"
)

#: Everyone joined to a room the given user is joined to (the user too, when joined anywhere).
_ROOM_MATES = (
    "SELECT DISTINCT mates.state_key FROM current_state_events mine"
    " JOIN current_state_events mates ON mates.room_id = mine.room_id"
    " WHERE mine.type = 'm.room.member' AND mine.state_key = ? AND mine.membership = 'join'"
    " AND mates.type = 'm.room.member' AND mates.membership = 'join'"
)


@dataclass(frozen=True, slots=True)
class PresenceState:
    user_id: str
    state: str
    status_msg: str | None
    #: the user's last activity, ms since the epoch (0: none known).
    last_active_ts: int
    #: for a remote user: when its server last told us (0 for local users).
    last_federation_update_ts: int
    currently_active: bool
    #: the presence stream position of the last change (0: not stored yet).
    stream_id: int = 0

    @staticmethod
    def offline(user_id: str) -> PresenceState:
        return PresenceState(user_id, OFFLINE, None, 0, 0, False)


def _state(row: Sequence[Any]) -> PresenceState:
    return PresenceState(
        row[0], row[1], row[2], int(row[3]), int(row[4]), bool(row[5]), int(row[6])
    )


class PresenceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_position(self) -> int:
        return await get_stream_position(self.db, PRESENCE_STREAM)

    async def get(self, user_id: str) -> PresenceState | None:
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM presence WHERE user_id = ?", user_id)
        return None if row is None else _state(row)

    async def set_states(self, states: Sequence[PresenceState]) -> int:
        """Store each state in place of the user's previous one, each with a new position;
        returns the last position (0 when ``states`` is empty)."""
        if not states:
            return 0
        async with self.db.transaction("set_presence") as txn:
            return await self.set_states_txn(txn, states)

    async def set_states_txn(self, txn: Transaction, states: Sequence[PresenceState]) -> int:
        position = 0
        # One user at a time in a fixed order: two sweeps never wait for each other in a cycle.
        for s in sorted(states, key=lambda s: s.user_id):
            position = await advance_stream_txn(txn, PRESENCE_STREAM, order_key=s.user_id)
            await txn.execute(
                f"INSERT INTO presence ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (user_id) DO UPDATE SET state = excluded.state,"
                " status_msg = excluded.status_msg, last_active_ts = excluded.last_active_ts,"
                " last_federation_update_ts = excluded.last_federation_update_ts,"
                " currently_active = excluded.currently_active, stream_id = excluded.stream_id",
                s.user_id,
                s.state,
                s.status_msg,
                s.last_active_ts,
                s.last_federation_update_ts,
                s.currently_active,
                position,
            )
        return position

    async def get_not_offline(self, limit: int) -> list[PresenceState]:
        """Users whose state is not offline (the timeout sweep), at most ``limit`` of them,
        the least recently changed first."""
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM presence WHERE state <> ? ORDER BY stream_id LIMIT ?",
            OFFLINE,
            limit,
        )
        return [_state(r) for r in rows]

    async def get_room_mates(self, user_id: str) -> set[str]:
        """Everyone joined to a room ``user_id`` is joined to (``user_id`` included when it is
        joined anywhere): whose presence ``user_id`` may see."""
        return {r[0] for r in await self.db.fetchall(_ROOM_MATES, user_id)}

    async def get_changes_for(
        self, user_id: str, after: int | None, upto: int
    ) -> list[PresenceState]:
        """The presence of ``user_id`` and of the users sharing a joined room with it, changed
        in ``(after, upto]`` (``after`` None: every stored state up to ``upto``)."""
        rows = await self.db.fetchall(
            f"SELECT {', '.join('p.' + c.strip() for c in _COLUMNS.split(','))}"
            " FROM presence p WHERE p.stream_id > ? AND p.stream_id <= ?"
            f" AND (p.user_id = ? OR p.user_id IN ({_ROOM_MATES}))"
            " ORDER BY p.stream_id",
            -1 if after is None else after,
            upto,
            user_id,
            user_id,
        )
        return [_state(r) for r in rows]
