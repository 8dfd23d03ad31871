"""Shared helpers of the room-API tests: table counts, a room's stored events in order and its
current state (rooms and members come from tests/builders.py)."""

from __future__ import annotations

from typing import Any

from homeserver.app import Homeserver
from homeserver.events.event import Event

#: the tables a room creation writes to; a refused request must leave them all unchanged.
ROOM_TABLES = (
    "rooms",
    "events",
    "room_aliases",
    "room_lifecycle_transitions",
    "state_groups",
    "current_state_events",
    "federation_outbox",
)


async def table_counts(hs: Homeserver) -> dict[str, int]:
    return {
        table: int(await hs.store.db.fetchval(f"SELECT COUNT(*) FROM {table}"))
        for table in ROOM_TABLES
    }


async def room_events(hs: Homeserver, room_id: str) -> list[Event]:
    rows = await hs.store.db.fetchall(
        "SELECT event_id FROM events WHERE room_id = ? ORDER BY stream_ordering", room_id
    )
    ids = [r[0] for r in rows]
    found = await hs.store.events.get_events(ids)
    return [found[i] for i in ids]


async def state_content(
    hs: Homeserver, room_id: str, event_type: str, state_key: str = ""
) -> dict[str, Any] | None:
    event = await hs.store.state.get_current_state_event(room_id, event_type, state_key)
    return None if event is None else event.content
