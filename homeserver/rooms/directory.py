"""The public room directory (``/publicRooms``): published rooms, largest first, filtered by a
search term and room types, paginated with opaque ``next_batch`` / ``prev_batch`` tokens.

Tokens are offsets into the ordering (``o<offset>``): simple, stable while the list is stable,
and a changed list only shifts a page (never an error).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.errors import BadRequest, Codes
from homeserver.storage import Store
from homeserver.storage.directory import PublishedRoom

#: a client asking for more than this many rooms at once gets this many.
MAX_LIMIT = 500


@dataclass(frozen=True, slots=True)
class PublicRoomsQuery:
    limit: int | None = None
    since: str | None = None
    search_term: str | None = None
    #: None: every type; otherwise the ``type`` values wanted (None in the list: untyped rooms).
    room_types: tuple[str | None, ...] | None = None


def _bad(message: str) -> BadRequest:
    return BadRequest(message, Codes.INVALID_PARAM)


def parse_limit(value: Any, *, from_query: bool = False) -> int | None:
    """``limit``: a query-string value (``from_query``) or a JSON integer."""
    if value is None:
        return None
    if from_query and isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise _bad("limit must be an integer") from None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _bad("limit must be a non-negative integer")
    return min(value, MAX_LIMIT)


def parse_since(token: str | None) -> int:
    if token is None or token == "":
        return 0
    if not token.startswith("o") or not token[1:].isdigit():
        raise _bad("Invalid since token")
    return int(token[1:])


def parse_filter(value: Any) -> tuple[str | None, tuple[str | None, ...] | None]:
    """``filter: {generic_search_term, room_types}`` of a ``POST /publicRooms`` body."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        raise BadRequest("filter must be an object", Codes.BAD_JSON)
    term = value.get("generic_search_term")
    if term is not None and not isinstance(term, str):
        raise BadRequest("filter.generic_search_term must be a string", Codes.BAD_JSON)
    types = value.get("room_types")
    if types is None:
        return term or None, None
    if not isinstance(types, list) or not all(t is None or isinstance(t, str) for t in types):
        raise BadRequest("filter.room_types must be an array of strings or null", Codes.BAD_JSON)
    return term or None, tuple(types)


def directory_entry(room: PublishedRoom) -> dict[str, Any]:
    """A ``chunk`` entry (spec "PublishedRoomsChunk"); absent optional fields are left out."""

    def content_of(event_type: str) -> dict[str, Any]:
        event = room.state.get(event_type)
        return event.content if event is not None else {}

    entry: dict[str, Any] = {
        "room_id": room.room_id,
        "num_joined_members": room.joined_members,
        "world_readable": content_of("m.room.history_visibility").get("history_visibility")
        == "world_readable",
        "guest_can_join": content_of("m.room.guest_access").get("guest_access") == "can_join",
    }
    optional = {
        "name": content_of("m.room.name").get("name"),
        "topic": content_of("m.room.topic").get("topic"),
        "canonical_alias": content_of("m.room.canonical_alias").get("alias"),
        "avatar_url": content_of("m.room.avatar").get("url"),
        "join_rule": content_of("m.room.join_rules").get("join_rule"),
        "room_type": content_of("m.room.create").get("type"),
    }
    for key, value in optional.items():
        if isinstance(value, str) and value:
            entry[key] = value
    return entry


def _matches(entry: dict[str, Any], query: PublicRoomsQuery) -> bool:
    if query.room_types is not None and entry.get("room_type") not in query.room_types:
        return False
    if query.search_term:
        needle = query.search_term.casefold()
        haystacks = (entry.get("name"), entry.get("topic"), entry.get("canonical_alias"))
        if not any(isinstance(h, str) and needle in h.casefold() for h in haystacks):
            return False
    return True


def paginate(entries: Sequence[dict[str, Any]], query: PublicRoomsQuery) -> dict[str, Any]:
    start = min(parse_since(query.since), len(entries))
    end = len(entries) if query.limit is None else min(start + query.limit, len(entries))
    response: dict[str, Any] = {
        "chunk": list(entries[start:end]),
        "total_room_count_estimate": len(entries),
    }
    if end < len(entries):
        response["next_batch"] = f"o{end}"
    if start > 0:
        response["prev_batch"] = f"o{max(0, start - (query.limit or start))}"
    return response


class PublicRoomList:
    def __init__(self, *, store: Store) -> None:
        self.store = store

    async def get_public_rooms(self, query: PublicRoomsQuery) -> dict[str, Any]:
        parse_since(query.since)  # a bad token is a 400 even when the list is empty
        rooms = await self.store.directory.get_published_rooms()
        entries = [directory_entry(room) for room in rooms]
        entries = [e for e in entries if _matches(e, query)]
        entries.sort(key=lambda e: (-e["num_joined_members"], e["room_id"]))
        return paginate(entries, query)
