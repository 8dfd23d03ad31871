"""/sync filters (client-server API "Filtering"): checking a filter definition, storing it,
and applying it to events, rooms and account data.

What is applied: room-level ``rooms``/``not_rooms``/``include_leave``; per section ``types``,
``not_types``, ``senders``, ``not_senders``, ``rooms``, ``not_rooms``, ``contains_url`` and
``limit`` (the timeline's, default 10); the state filter's ``lazy_load_members`` and
``include_redundant_members`` (read where Synapse reads them: ``room.state``; applied by
:mod:`homeserver.sync.lazy_members`). ``event_fields``, ``event_format`` and
``unread_thread_notifications`` are accepted and ignored: every field is sent, which clients
handle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from homeserver.crypto.canonical_json import parse_json
from homeserver.errors import BadRequest, Codes, Forbidden, NotFound
from homeserver.events.event import Event
from homeserver.storage import Store

DEFAULT_TIMELINE_LIMIT = 10
#: Larger timeline limits are served as this many events (the rest is reachable via prev_batch).
MAX_TIMELINE_LIMIT = 1000

_STRING_LISTS = ("types", "not_types", "senders", "not_senders", "rooms", "not_rooms")
_BOOLEANS = (
    "contains_url",
    "lazy_load_members",
    "include_redundant_members",
    "unread_thread_notifications",
)


def _bad(message: str) -> BadRequest:
    return BadRequest(f"Invalid filter: {message}", Codes.BAD_JSON)


def _check_event_filter(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise _bad(f"{where} must be an object")
    for key in _STRING_LISTS:
        items = value.get(key)
        if items is not None and (
            not isinstance(items, list) or not all(isinstance(i, str) for i in items)
        ):
            raise _bad(f"{where}.{key} must be a list of strings")
    for key in _BOOLEANS:
        if key in value and not isinstance(value[key], bool):
            raise _bad(f"{where}.{key} must be a boolean")
    if "limit" in value:
        limit = value["limit"]
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise _bad(f"{where}.limit must be a non-negative integer")


def check_filter(definition: Any) -> dict[str, Any]:
    """``definition`` if it is a valid filter; 400 ``M_BAD_JSON`` naming the problem if not."""
    if not isinstance(definition, dict):
        raise _bad("a filter must be an object")
    fields = definition.get("event_fields")
    if fields is not None and (
        not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)
    ):
        raise _bad("event_fields must be a list of strings")
    if "event_format" in definition and definition["event_format"] not in ("client", "federation"):
        raise _bad("event_format must be 'client' or 'federation'")
    for key in ("presence", "account_data"):
        if key in definition:
            _check_event_filter(definition[key], key)
    room = definition.get("room")
    if room is not None:
        _check_event_filter(room, "room")  # its rooms / not_rooms lists
        if "include_leave" in room and not isinstance(room["include_leave"], bool):
            raise _bad("room.include_leave must be a boolean")
        for key in ("timeline", "state", "ephemeral", "account_data"):
            if key in room:
                _check_event_filter(room[key], f"room.{key}")
    return definition


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$")


def _any_glob(patterns: list[str], value: str) -> bool:
    return any(_glob(p).match(value) for p in patterns)


#: The fields of an event filter :meth:`EventFilter.allows` reads.
_EVENT_FIELDS = (
    "rooms",
    "not_rooms",
    "senders",
    "not_senders",
    "types",
    "not_types",
    "contains_url",
)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """One section's filter (``EventFilter`` / ``RoomEventFilter`` / ``StateFilter``)."""

    definition: dict[str, Any]

    def allows_room(self, room_id: str) -> bool:
        rooms = self.definition.get("rooms")
        if room_id in (self.definition.get("not_rooms") or []):
            return False
        return rooms is None or room_id in rooms

    def allows(
        self,
        event_type: str,
        sender: str | None = None,
        room_id: str | None = None,
        content: dict[str, Any] | None = None,
    ) -> bool:
        d = self.definition
        if room_id is not None and not self.allows_room(room_id):
            return False
        if sender is not None:
            if sender in (d.get("not_senders") or []):
                return False
            senders = d.get("senders")
            if senders is not None and sender not in senders:
                return False
        if _any_glob(d.get("not_types") or [], event_type):
            return False
        types = d.get("types")
        if types is not None and not _any_glob(types, event_type):
            return False
        contains_url = d.get("contains_url")
        if contains_url is None or content is None:
            return True
        return bool(contains_url == isinstance(content.get("url"), str))

    def allows_event(self, event: Event) -> bool:
        return self.allows(event.type, event.sender, event.room_id, event.content)

    @property
    def judges_events(self) -> bool:
        """Whether :meth:`allows` can refuse an event: False for a filter with none of the
        fields it reads (one holding only ``limit``), whose events need not be looked at."""
        return any(key in self.definition for key in _EVENT_FIELDS)

    @property
    def limit(self) -> int | None:
        limit = self.definition.get("limit")
        return limit if isinstance(limit, int) and not isinstance(limit, bool) else None


@dataclass(frozen=True, slots=True)
class SyncFilter:
    """A whole filter, split into the parts /sync applies."""

    definition: dict[str, Any]

    def _room_part(self) -> dict[str, Any]:
        room = self.definition.get("room")
        return room if isinstance(room, dict) else {}

    def _section(self, key: str) -> EventFilter:
        value = self._room_part().get(key)
        return EventFilter(value if isinstance(value, dict) else {})

    @property
    def rooms(self) -> EventFilter:
        """Room-level ``rooms`` / ``not_rooms``."""
        return EventFilter(self._room_part())

    @property
    def timeline(self) -> EventFilter:
        return self._section("timeline")

    @property
    def state(self) -> EventFilter:
        return self._section("state")

    @property
    def ephemeral(self) -> EventFilter:
        return self._section("ephemeral")

    @property
    def room_account_data(self) -> EventFilter:
        return self._section("account_data")

    @property
    def account_data(self) -> EventFilter:
        value = self.definition.get("account_data")
        return EventFilter(value if isinstance(value, dict) else {})

    @property
    def presence(self) -> EventFilter:
        value = self.definition.get("presence")
        return EventFilter(value if isinstance(value, dict) else {})

    @property
    def lazy_load_members(self) -> bool:
        """Only the member events the timeline needs go in the state section."""
        return self.state.definition.get("lazy_load_members") is True

    @property
    def include_redundant_members(self) -> bool:
        """With lazy loading: resend member events this device was already sent."""
        return self.state.definition.get("include_redundant_members") is True

    @property
    def include_leave(self) -> bool:
        return self._room_part().get("include_leave") is True

    @property
    def timeline_limit(self) -> int:
        limit = self.timeline.limit
        return min(DEFAULT_TIMELINE_LIMIT if limit is None else limit, MAX_TIMELINE_LIMIT)


class FilterService:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(self, requester_id: str, user_id: str, definition: Any) -> str:
        if requester_id != user_id:
            raise Forbidden("Cannot create filters for other users")
        return await self.store.filters.add_filter(user_id, check_filter(definition))

    async def get(self, requester_id: str, user_id: str, filter_id: str) -> dict[str, Any]:
        if requester_id != user_id:
            raise Forbidden("Cannot get filters for other users")
        definition = await self.store.filters.get_filter(user_id, filter_id)
        if definition is None:
            raise NotFound("No such filter")
        return definition

    async def resolve(self, user_id: str, param: str | None) -> SyncFilter:
        """The ``filter`` query parameter of /sync: inline JSON or a stored filter ID."""
        if param is None or param == "":
            return SyncFilter({})
        if param.lstrip().startswith("{"):
            try:
                definition = parse_json(param)
            except (ValueError, RecursionError):
                raise BadRequest("Invalid filter JSON", Codes.NOT_JSON) from None
            return SyncFilter(check_filter(definition))
        stored = await self.store.filters.get_filter(user_id, param)
        if stored is None:
            raise BadRequest("No such filter", Codes.INVALID_PARAM)
        return SyncFilter(stored)
