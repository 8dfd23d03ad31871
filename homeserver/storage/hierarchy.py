"""Reads for space hierarchies and room summaries (``/hierarchy``, ``/room_summary``): a room's
summary state, its ``m.space.child`` links and joined-member count; and the stored pagination
sessions of ``/hierarchy`` (migration 024)."""

from __future__ import annotations

from dataclasses import dataclass, field

from homeserver.events.event import Event
from homeserver.storage.database import Database, placeholders
from homeserver.storage.events import EventsStore

#: the state a summary shows (all with state key "").
SUMMARY_STATE_TYPES = (
    "m.room.create",
    "m.room.name",
    "m.room.topic",
    "m.room.canonical_alias",
    "m.room.avatar",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.encryption",
)
SPACE_CHILD = "m.space.child"


@dataclass(slots=True)
class RoomView:
    room_id: str
    room_version: str
    joined_members: int
    #: event type → the current state event of that type (key "").
    state: dict[str, Event] = field(default_factory=dict)
    #: the current ``m.space.child`` events, unsorted and unchecked.
    children: list[Event] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class HierarchySession:
    user_id: str
    room_id: str
    params: str
    walk: str


class HierarchyStore:
    def __init__(self, db: Database, events: EventsStore) -> None:
        self.db = db
        self.events = events

    async def get_room_view(self, room_id: str) -> RoomView | None:
        """The room's summary state and space links, None for a room we have no row for."""
        version = await self.db.fetchval(
            "SELECT room_version FROM rooms WHERE room_id = ?", room_id
        )
        if version is None:
            return None
        joined = await self.db.fetchval(
            "SELECT COUNT(*) FROM current_state_events"
            " WHERE room_id = ? AND type = 'm.room.member' AND membership = 'join'",
            room_id,
        )
        rows = await self.db.fetchall(
            "SELECT type, event_id FROM current_state_events WHERE room_id = ?"
            f" AND ((state_key = '' AND type IN ({placeholders(len(SUMMARY_STATE_TYPES))}))"
            " OR type = ?)",
            room_id,
            *SUMMARY_STATE_TYPES,
            SPACE_CHILD,
        )
        events = await self.events.get_events(row[1] for row in rows)
        view = RoomView(room_id, str(version), int(joined or 0))
        for event_type, event_id in rows:
            event = events.get(event_id)
            if event is None:
                continue
            if event_type == SPACE_CHILD:
                view.children.append(event)
            else:
                view.state[event_type] = event
        return view

    async def memberships_of_server(self, room_id: str, server_name: str) -> set[str]:
        """The current memberships in ``room_id`` of ``server_name``'s users."""
        rows = await self.db.fetchall(
            "SELECT state_key, membership FROM current_state_events"
            " WHERE room_id = ? AND type = 'm.room.member'",
            room_id,
        )
        return {m for user, m in rows if user.split(":", 1)[-1] == server_name and m is not None}

    # --- pagination sessions ---------------------------------------------------------------
    async def save_session(
        self, session_id: str, session: HierarchySession, *, now_ms: int, expires_ts: int
    ) -> None:
        async with self.db.transaction("hierarchy_save_session") as txn:
            await txn.execute("DELETE FROM room_hierarchy_sessions WHERE expires_ts < ?", now_ms)
            await txn.execute(
                "INSERT INTO room_hierarchy_sessions"
                " (session_id, user_id, room_id, params, walk, expires_ts)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                session_id,
                session.user_id,
                session.room_id,
                session.params,
                session.walk,
                expires_ts,
            )

    async def get_session(self, session_id: str, *, now_ms: int) -> HierarchySession | None:
        row = await self.db.fetchone(
            "SELECT user_id, room_id, params, walk FROM room_hierarchy_sessions"
            " WHERE session_id = ? AND expires_ts >= ?",
            session_id,
            now_ms,
        )
        return None if row is None else HierarchySession(row[0], row[1], row[2], row[3])
