"""The body of ``POST /search`` (client-server API "Server Side Search"), checked and parsed.

Only the ``room_events`` category exists. Its ``filter`` is a RoomEventFilter: ``rooms``,
``not_rooms``, ``senders``, ``not_senders``, ``types``, ``not_types`` (``*`` wildcards),
``contains_url`` and ``limit`` are applied; other keys are accepted and ignored. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from homeserver.errors import BadRequest, Codes
from homeserver.rooms.event_filter import RoomEventFilter

SEARCH_KEYS = ("content.body", "content.name", "content.topic")
ORDERS = ("rank", "recent")
DEFAULT_LIMIT = 10
#: larger limits are served as this many results (the rest through ``next_batch``).
MAX_LIMIT = 100
#: events before/after each result in ``context``: Synapse's default, and our cap.
DEFAULT_CONTEXT = 5
MAX_CONTEXT = 50
#: a longer search term is refused; only its first words are looked for.
MAX_TERM_CHARS = 1000
MAX_WORDS = 16
#: a word is a run of letters or digits: what both engines' tokenisers keep as one token.
_WORD = re.compile(r"[^\W_]+")
_GROUP_KEYS = ("room_id", "sender")


@dataclass(frozen=True, slots=True)
class EventContextRequest:
    before_limit: int = DEFAULT_CONTEXT
    after_limit: int = DEFAULT_CONTEXT
    include_profile: bool = False


@dataclass(frozen=True, slots=True)
class SearchRequest:
    term: str
    words: tuple[str, ...]
    keys: tuple[str, ...]
    order_by: str
    limit: int
    rooms: tuple[str, ...] | None
    not_rooms: tuple[str, ...]
    event_filter: RoomEventFilter
    contains_url: bool | None
    context: EventContextRequest | None
    include_state: bool
    group_by: tuple[str, ...]


def _bad(message: str, code: str = Codes.BAD_JSON) -> BadRequest:
    return BadRequest(message, code)


def _strings(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"{where} must be a list of strings")
    return tuple(value)


def _bool(body: dict[str, Any], key: str, where: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise _bad(f"{where}.{key} must be a boolean")
    return value


def _int(body: dict[str, Any], key: str, where: str, default: int, maximum: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(f"{where}.{key} must be a non-negative integer")
    return min(value, maximum)


def search_words(term: str) -> tuple[str, ...]:
    """The words looked for: runs of letters or digits, lower-cased, at most :data:`MAX_WORDS`,
    each once."""
    words: list[str] = []
    for word in _WORD.findall(term.lower()):
        if word not in words:
            words.append(word)
    return tuple(words[:MAX_WORDS])


def _context(value: Any) -> EventContextRequest | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad("event_context must be an object")
    where = "event_context"
    return EventContextRequest(
        before_limit=_int(value, "before_limit", where, DEFAULT_CONTEXT, MAX_CONTEXT),
        after_limit=_int(value, "after_limit", where, DEFAULT_CONTEXT, MAX_CONTEXT),
        include_profile=bool(_bool(value, "include_profile", where)),
    )


def _groups(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise _bad("groupings must be an object")
    group_by = value.get("group_by", [])
    if not isinstance(group_by, list):
        raise _bad("groupings.group_by must be a list")
    keys: list[str] = []
    for group in group_by:
        if not isinstance(group, dict) or group.get("key") not in _GROUP_KEYS:
            raise _bad("groupings.group_by entries must be {'key': 'room_id' or 'sender'}")
        if group["key"] not in keys:
            keys.append(group["key"])
    return tuple(keys)


def parse_search_request(body: Any) -> SearchRequest | None:
    """The ``room_events`` search asked for (None: no category asked for); 400 naming the
    problem otherwise."""
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object", Codes.NOT_JSON)
    categories = body.get("search_categories")
    if not isinstance(categories, dict):
        raise _bad("search_categories must be an object")
    room_events = categories.get("room_events")
    if room_events is None:
        return None
    if not isinstance(room_events, dict):
        raise _bad("search_categories.room_events must be an object")
    term = room_events.get("search_term")
    if not isinstance(term, str):
        raise _bad("room_events.search_term must be a string")
    if len(term) > MAX_TERM_CHARS:
        raise _bad(f"search_term is longer than {MAX_TERM_CHARS} characters", Codes.INVALID_PARAM)
    keys = _strings(room_events.get("keys"), "room_events.keys") or SEARCH_KEYS
    if any(key not in SEARCH_KEYS for key in keys):
        raise _bad(f"room_events.keys may only hold {', '.join(SEARCH_KEYS)}", Codes.INVALID_PARAM)
    order_by = room_events.get("order_by", "rank")
    if order_by not in ORDERS:
        raise _bad("room_events.order_by must be 'rank' or 'recent'", Codes.INVALID_PARAM)
    flt = room_events.get("filter")
    flt = {} if flt is None else flt
    if not isinstance(flt, dict):
        raise _bad("room_events.filter must be an object")
    lists = {
        key: _strings(flt.get(key), f"filter.{key}")
        for key in ("rooms", "not_rooms", "senders", "not_senders", "types", "not_types")
    }
    include_state = room_events.get("include_state", False)
    if not isinstance(include_state, bool):
        raise _bad("room_events.include_state must be a boolean")
    return SearchRequest(
        term=term,
        words=search_words(term),
        keys=tuple(dict.fromkeys(keys)),
        order_by=order_by,
        # A limit of 0 is served as one result: a page must move the search on.
        limit=max(1, _int(flt, "limit", "filter", DEFAULT_LIMIT, MAX_LIMIT)),
        rooms=lists["rooms"],
        not_rooms=lists["not_rooms"] or (),
        event_filter=RoomEventFilter(
            types=lists["types"],
            not_types=lists["not_types"] or (),
            senders=lists["senders"],
            not_senders=lists["not_senders"] or (),
        ),
        contains_url=_bool(flt, "contains_url", "filter"),
        context=_context(room_events.get("event_context")),
        include_state=include_state,
        group_by=_groups(room_events.get("groupings")),
    )
