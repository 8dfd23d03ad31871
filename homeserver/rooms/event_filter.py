"""The RoomEventFilter of /messages and /context (``?filter=`` JSON), as far as it selects events:
``types``, ``not_types`` (with ``*`` wildcards), ``senders``, ``not_senders``, plus the
``lazy_load_members`` flag. Other keys are accepted and ignored. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from homeserver.crypto.canonical_json import parse_json
from homeserver.errors import BadRequest, Codes


@lru_cache(maxsize=256)
def _pattern(glob: str) -> re.Pattern[str]:
    # The spec's type filters know one wildcard, '*', matching any run of characters.
    return re.compile("^" + ".*".join(re.escape(part) for part in glob.split("*")) + "$")


def _matches_any(value: str, globs: tuple[str, ...]) -> bool:
    return any(_pattern(glob).match(value) for glob in globs)


@dataclass(frozen=True, slots=True)
class RoomEventFilter:
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()
    lazy_load_members: bool = False

    @property
    def is_empty(self) -> bool:
        return (
            self.types is None
            and not self.not_types
            and self.senders is None
            and not self.not_senders
        )

    def allows(self, event_type: str, sender: str) -> bool:
        if self.types is not None and not _matches_any(event_type, self.types):
            return False
        if self.not_types and _matches_any(event_type, self.not_types):
            return False
        if self.senders is not None and sender not in self.senders:
            return False
        return sender not in self.not_senders


NO_FILTER = RoomEventFilter()


def _string_list(body: dict[str, Any], key: str) -> tuple[str, ...] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"filter: '{key}' must be a list of strings", Codes.INVALID_PARAM)
    return tuple(value)


def parse_room_event_filter(text: str | None) -> RoomEventFilter:
    """Parse the ``filter`` query parameter; 400 ``M_INVALID_PARAM`` if it is not a JSON object
    of the right shape."""
    if text is None or not text.strip():
        return NO_FILTER
    try:
        body = parse_json(text)
    except (ValueError, RecursionError):
        raise BadRequest("filter is not valid JSON", Codes.INVALID_PARAM) from None
    if not isinstance(body, dict):
        raise BadRequest("filter must be a JSON object", Codes.INVALID_PARAM)
    lazy = body.get("lazy_load_members", False)
    if not isinstance(lazy, bool):
        raise BadRequest("filter: 'lazy_load_members' must be a boolean", Codes.INVALID_PARAM)
    return RoomEventFilter(
        types=_string_list(body, "types"),
        not_types=_string_list(body, "not_types") or (),
        senders=_string_list(body, "senders"),
        not_senders=_string_list(body, "not_senders") or (),
        lazy_load_members=lazy,
    )
