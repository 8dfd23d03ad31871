"""Reads for the admin API's room list and room details: each room's row, member and state
counts, and the current state events a summary shows, in two statements for any number of rooms.

Synapse keeps these figures in ``room_stats_*`` tables updated on every event; we compute them
from ``current_state_events`` when asked (an admin reads rarely, the event path stays lean).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from homeserver.events.event import Event
from homeserver.storage.database import Database, placeholders
from homeserver.storage.events import EventsStore

#: the state (all with state key "") a room summary is made of.
SUMMARY_STATE_TYPES = (
    "m.room.create",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.join_rules",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.encryption",
    "m.room.tombstone",
)


@dataclass(slots=True)
class RoomCounts:
    room_id: str
    room_version: str
    creator: str | None
    is_public: bool
    joined_members: int
    joined_local_members: int
    state_events: int
    #: event type → the current state event of that type (key "").
    state: dict[str, Event] = field(default_factory=dict)


def like_suffix(server_name: str) -> str:
    """A LIKE pattern (escape character ``\\``) matching user IDs of ``server_name``."""
    escaped = server_name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return "%:" + escaped


class AdminRoomsStore:
    def __init__(self, db: Database, events: EventsStore) -> None:
        self.db = db
        self.events = events

    async def get_room_counts(
        self, server_name: str, room_id: str | None = None
    ) -> list[RoomCounts]:
        """Every room (or just ``room_id``) with its counts and summary state."""
        where = "" if room_id is None else " WHERE r.room_id = ?"
        args: list[object] = [like_suffix(server_name)]
        if room_id is not None:
            args.append(room_id)
        rows = await self.db.fetchall(
            "SELECT r.room_id, r.room_version, r.creator, r.is_public,"
            " (SELECT COUNT(*) FROM current_state_events c WHERE c.room_id = r.room_id"
            "  AND c.type = 'm.room.member' AND c.membership = 'join'),"
            " (SELECT COUNT(*) FROM current_state_events c WHERE c.room_id = r.room_id"
            "  AND c.type = 'm.room.member' AND c.membership = 'join'"
            "  AND c.state_key LIKE ? ESCAPE '\\'),"
            " (SELECT COUNT(*) FROM current_state_events c WHERE c.room_id = r.room_id)"
            f" FROM rooms r{where}",
            *args,
        )
        rooms = {
            r[0]: RoomCounts(r[0], r[1], r[2], bool(r[3]), int(r[4]), int(r[5]), int(r[6]))
            for r in rows
        }
        if not rooms:
            return []
        state_args: list[object] = list(SUMMARY_STATE_TYPES)
        state_where = ""
        if room_id is not None:
            state_where = " AND c.room_id = ?"
            state_args.append(room_id)
        state_rows = await self.db.fetchall(
            "SELECT c.room_id, c.type, c.event_id FROM current_state_events c"
            f" WHERE c.state_key = '' AND c.type IN ({placeholders(len(SUMMARY_STATE_TYPES))})"
            f"{state_where}",
            *state_args,
        )
        events = await self.events.get_events(row[2] for row in state_rows)
        for rid, event_type, event_id in state_rows:
            event = events.get(event_id)
            if rid in rooms and event is not None:
                rooms[rid].state[event_type] = event
        return list(rooms.values())

    async def get_local_memberships(self, room_id: str, server_name: str) -> dict[str, str]:
        """Local user → current membership in ``room_id`` (every membership)."""
        rows = await self.db.fetchall(
            "SELECT state_key, membership FROM current_state_events"
            " WHERE room_id = ? AND type = 'm.room.member' AND state_key LIKE ? ESCAPE '\\'",
            room_id,
            like_suffix(server_name),
        )
        return {r[0]: r[1] for r in rows}

    async def count_devices(self, user_ids: Iterable[str]) -> int:
        ids = sorted(set(user_ids))
        if not ids:
            return 0
        return int(
            await self.db.fetchval(
                f"SELECT COUNT(*) FROM devices WHERE user_id IN ({placeholders(len(ids))})",
                *ids,
            )
        )

    async def forgotten_by(self, room_id: str) -> set[str]:
        rows = await self.db.fetchall(
            "SELECT user_id FROM forgotten_rooms WHERE room_id = ?", room_id
        )
        return {r[0] for r in rows}
