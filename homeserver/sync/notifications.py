"""``GET /notifications``: the events that notified a user, newest first (spec "Listing
Notifications"). ``from`` is the stream ordering to continue below (the previous page's
``next_token``); ``only=highlight`` keeps the highlights."""

from __future__ import annotations

from typing import Any

from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes
from homeserver.storage import Store
from homeserver.visibility.serialize import serialize_for_client

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


def parse_from(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 18:
        raise BadRequest("Invalid 'from' token", Codes.INVALID_PARAM)
    return int(value)


def parse_limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not value.isdigit() or len(value) > 9:
        raise BadRequest("'limit' must be a non-negative integer", Codes.INVALID_PARAM)
    return min(int(value), MAX_LIMIT)


class NotificationsService:
    def __init__(self, store: Store, clock: WallClock) -> None:
        self.store = store
        self.clock = clock

    async def get_notifications(
        self, user_id: str, before: int | None, limit: int, only: str | None
    ) -> dict[str, Any]:
        rows = await self.store.push_actions.get_notifications(
            user_id, before, limit, only_highlight=only is not None and "highlight" in only
        )
        events = await self.store.events.get_events([r.event_id for r in rows])
        present = [r for r in rows if r.event_id in events]
        bodies = await serialize_for_client(
            self.store, [events[r.event_id] for r in present], self.clock()
        )
        read = await self.store.push_actions.get_read_positions(
            user_id, [r.room_id for r in present]
        )
        pushers = await self.store.pushers.get_pushers(user_id)
        tag = next((p.profile_tag for p in pushers if p.profile_tag is not None), None)
        notifications = [
            {
                "actions": row.actions,
                "event": body,
                "profile_tag": tag,
                "read": row.stream_ordering <= read.get(row.room_id, 0),
                "room_id": row.room_id,
                "ts": row.ts,
            }
            for row, body in zip(present, bodies, strict=True)
        ]
        result: dict[str, Any] = {"notifications": notifications}
        if rows and len(rows) == limit:
            result["next_token"] = str(rows[-1].stream_ordering)
        return result
