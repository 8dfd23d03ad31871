"""``timestamp_to_event`` (MSC3030, spec v1.6): the room's event nearest a point in time, in one
direction. For a client, only events the user may see count (the user must be able to read
the room at all); the admin API looks at every timeline event.
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import BadRequest, Codes, NotFound
from homeserver.storage import Store
from homeserver.types import room_id_error
from homeserver.visibility.client import check_read_access, filter_events_for_client

#: candidates judged per read; a user who may see none of them is told nothing was found.
_BATCH = 50
_MAX_BATCHES = 20


class TimestampLookup:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def find(
        self, room_id: str, ts: int, *, forwards: bool, user_id: str | None
    ) -> dict[str, Any]:
        """``{"event_id", "origin_server_ts"}``; ``user_id`` None: the admin's look (every
        event), else only what that user may see."""
        if room_id_error(room_id):
            raise BadRequest(f"{room_id} is not a legal room ID", Codes.INVALID_PARAM)
        access = None
        if user_id is not None:
            access = await check_read_access(self.store, room_id, user_id)
        elif await self.store.rooms.get_room(room_id) is None:
            raise NotFound("Room not found")
        ops = self.store.admin_room_ops
        seen: set[str] = set()
        cursor = ts
        for _ in range(_MAX_BATCHES):
            ids = [
                i
                for i in await ops.events_near_timestamp(
                    room_id, cursor, forwards=forwards, limit=_BATCH + len(seen)
                )
                if i not in seen
            ]
            if not ids:
                break
            found = await self.store.events.get_events(ids)
            events = [found[i] for i in ids if i in found]
            if user_id is not None and access is not None:
                visible = await filter_events_for_client(self.store, user_id, events, access=access)
            else:
                visible = events
            if visible:
                event = visible[0]
                return {"event_id": event.event_id, "origin_server_ts": event.origin_server_ts}
            seen.update(ids)
            cursor = events[-1].origin_server_ts if events else cursor
        direction = "f" if forwards else "b"
        raise NotFound(f"Unable to find event from {ts} in direction {direction}")
