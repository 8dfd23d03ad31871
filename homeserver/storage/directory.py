"""Reads for the public room directory: the published rooms with the state the directory shows
and their joined-member counts, in two queries whatever the number of rooms."""

from __future__ import annotations

from dataclasses import dataclass, field

from homeserver.events.event import Event
from homeserver.storage.database import Database, placeholders
from homeserver.storage.events import EventsStore

#: the state shown in a directory entry (all with state key "").
DIRECTORY_STATE_TYPES = (
    "m.room.create",
    "m.room.name",
    "m.room.topic",
    "m.room.canonical_alias",
    "m.room.avatar",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
)


@dataclass(slots=True)
class PublishedRoom:
    room_id: str
    joined_members: int
    #: event type → the current state event of that type (key "").
    state: dict[str, Event] = field(default_factory=dict)


class DirectoryStore:
    def __init__(self, db: Database, events: EventsStore) -> None:
        self.db = db
        self.events = events

    async def get_published_rooms(self) -> list[PublishedRoom]:
        """Every room in the directory with its directory state and joined-member count."""
        counts = await self.db.fetchall(
            "SELECT r.room_id, COUNT(c.state_key) FROM rooms r"
            " LEFT JOIN current_state_events c ON c.room_id = r.room_id"
            " AND c.type = 'm.room.member' AND c.membership = 'join'"
            " WHERE r.is_public = TRUE GROUP BY r.room_id",
        )
        rooms = {room_id: PublishedRoom(room_id, int(count)) for room_id, count in counts}
        if not rooms:
            return []
        rows = await self.db.fetchall(
            "SELECT c.room_id, c.type, c.event_id FROM current_state_events c"
            " JOIN rooms r ON r.room_id = c.room_id"
            " WHERE r.is_public = TRUE AND c.state_key = ''"
            f" AND c.type IN ({placeholders(len(DIRECTORY_STATE_TYPES))})",
            *DIRECTORY_STATE_TYPES,
        )
        events = await self.events.get_events(row[2] for row in rows)
        for room_id, event_type, event_id in rows:
            event = events.get(event_id)
            if room_id in rooms and event is not None:
                rooms[room_id].state[event_type] = event
        return list(rooms.values())
