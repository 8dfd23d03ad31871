"""The admin API's reads of rooms: the list (search, order, paging), details, members, state.

Keys and orderings are Synapse's (``synapse/rest/admin/rooms.py``, ``get_rooms_paginate``), so
admin UIs written for Synapse work unchanged. The list is built from every room's summary and
sorted here (see storage/admin_rooms.py for why there is no stats table).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, NotFound
from homeserver.storage import Store
from homeserver.storage.admin_rooms import RoomCounts
from homeserver.types import room_id_error
from homeserver.visibility.serialize import serialize_for_client

#: order_by → (summary key, ascending by default). Synapse's values, deprecated ones included.
ROOM_ORDERS: dict[str, tuple[str, bool]] = {
    "name": ("name", True),
    "alphabetical": ("name", True),
    "canonical_alias": ("canonical_alias", True),
    "joined_members": ("joined_members", False),
    "size": ("joined_members", False),
    "joined_local_members": ("joined_local_members", False),
    "version": ("version", False),
    "creator": ("creator", True),
    "encryption": ("encryption", True),
    "federatable": ("federatable", True),
    "public": ("public", True),
    "join_rules": ("join_rules", True),
    "guest_access": ("guest_access", True),
    "history_visibility": ("history_visibility", True),
    "state_events": ("state_events", False),
}


@dataclass(frozen=True, slots=True)
class RoomListQuery:
    start: int = 0
    limit: int = 100
    order_by: str = "name"
    backwards: bool = False
    search_term: str | None = None
    public_rooms: bool | None = None
    empty_rooms: bool | None = None


def _content(room: RoomCounts, event_type: str) -> dict[str, Any]:
    event = room.state.get(event_type)
    return event.content if event is not None else {}


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def room_summary(room: RoomCounts) -> dict[str, Any]:
    """One entry of Synapse's room list."""
    create = _content(room, "m.room.create")
    return {
        "room_id": room.room_id,
        "name": _string(_content(room, "m.room.name").get("name")),
        "canonical_alias": _string(_content(room, "m.room.canonical_alias").get("alias")),
        "joined_members": room.joined_members,
        "joined_local_members": room.joined_local_members,
        "version": room.room_version,
        "creator": room.creator,
        "encryption": _string(_content(room, "m.room.encryption").get("algorithm")),
        "federatable": create.get("m.federate", True) is not False,
        "public": room.is_public,
        "join_rules": _string(_content(room, "m.room.join_rules").get("join_rule")),
        "guest_access": _string(_content(room, "m.room.guest_access").get("guest_access")),
        "history_visibility": _string(
            _content(room, "m.room.history_visibility").get("history_visibility")
        ),
        "state_events": room.state_events,
        "room_type": _string(create.get("type")),
    }


def _matches(summary: dict[str, Any], term: str) -> bool:
    """Synapse's search: a substring of the name, of the canonical alias's localpart, or
    exactly the room ID (case-insensitive for the first two)."""
    lowered = term.lower()
    name = summary["name"]
    alias = summary["canonical_alias"]
    if name is not None and lowered in name.lower():
        return True
    if alias is not None and lowered in alias.lower().split(":", 1)[0][1:]:
        return True
    return bool(summary["room_id"] == term)


def _sort_key(key: str, reverse: bool) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    def sort_key(summary: dict[str, Any]) -> tuple[Any, ...]:
        value = summary[key]
        # Rooms without the value go last whichever the direction (PostgreSQL's ASC order).
        missing = value is None
        return (missing != reverse, value if not missing else "", summary["room_id"])

    return sort_key


def sort_rooms(summaries: list[dict[str, Any]], order_by: str, backwards: bool) -> None:
    key, ascending = ROOM_ORDERS[order_by]
    reverse = ascending == backwards
    summaries.sort(key=_sort_key(key, reverse), reverse=reverse)


def check_room_id(room_id: str) -> None:
    if room_id_error(room_id):
        raise BadRequest(f"{room_id} is not a legal room ID", Codes.INVALID_PARAM)


class AdminRooms:
    def __init__(self, store: Store, server_name: str, clock: WallClock) -> None:
        self.store = store
        self.server_name = server_name
        self.clock = clock

    async def list_rooms(self, query: RoomListQuery) -> dict[str, Any]:
        rooms = await self.store.admin_rooms.get_room_counts(self.server_name)
        summaries = [room_summary(r) for r in rooms]
        if query.search_term is not None:
            summaries = [s for s in summaries if _matches(s, query.search_term)]
        if query.public_rooms is not None:
            summaries = [s for s in summaries if s["public"] == query.public_rooms]
        if query.empty_rooms is not None:
            summaries = [s for s in summaries if (s["joined_members"] == 0) == query.empty_rooms]
        sort_rooms(summaries, query.order_by, query.backwards)
        total = len(summaries)
        start, limit = query.start, query.limit
        body: dict[str, Any] = {
            "rooms": summaries[start : start + limit],
            "offset": start,
            "total_rooms": total,
        }
        if start + limit < total:
            body["next_batch"] = start + limit
        if start > 0:
            body["prev_batch"] = max(0, start - limit)
        return body

    async def _counts(self, room_id: str) -> RoomCounts:
        check_room_id(room_id)
        rooms = await self.store.admin_rooms.get_room_counts(self.server_name, room_id)
        if not rooms:
            raise NotFound("Room not found")
        return rooms[0]

    async def get_room(self, room_id: str) -> dict[str, Any]:
        """Synapse's room details: the summary plus topic, avatar, devices, forgotten and the
        tombstone."""
        room = await self._counts(room_id)
        body = room_summary(room)
        body["topic"] = _string(_content(room, "m.room.topic").get("topic"))
        body["avatar"] = _string(_content(room, "m.room.avatar").get("url"))
        memberships = await self.store.admin_rooms.get_local_memberships(room_id, self.server_name)
        joined = [u for u, m in memberships.items() if m == "join"]
        body["joined_local_devices"] = await self.store.admin_rooms.count_devices(joined)
        forgotten = await self.store.admin_rooms.forgotten_by(room_id)
        # As Synapse: forgotten once no local user with a membership still remembers it.
        body["forgotten"] = all(user in forgotten for user in memberships)
        tombstone = room.state.get("m.room.tombstone")
        body["tombstoned"] = tombstone is not None
        body["replacement_room"] = (
            _string(tombstone.content.get("replacement_room")) if tombstone else None
        )
        return body

    async def members(self, room_id: str) -> dict[str, Any]:
        await self._counts(room_id)
        members = await self.store.state.get_current_members(room_id, "join")
        return {"members": members, "total": len(members)}

    async def state(self, room_id: str, event_type: str | None = None) -> dict[str, Any]:
        """The current state as client events (one type only with ``event_type``)."""
        await self._counts(room_id)
        state_ids = await self.store.state.get_current_state_ids(room_id)
        wanted = [
            eid
            for (etype, _key), eid in sorted(state_ids.items())
            if event_type is None or etype == event_type
        ]
        events = await self.store.events.get_events(wanted)
        found = [events[eid] for eid in wanted if eid in events]
        return {"state": await serialize_for_client(self.store, found, self.clock())}
