"""The audit line is written by hand; it must be the line ``json.dumps`` wrote, byte for byte."""

from __future__ import annotations

import enum
import json
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.rooms.audit import AUDITED_KEYS, audit_line, audit_log_subscriber
from homeserver.rooms.bus import ROOM_CREATED, ROOM_UPGRADED, DomainEvent


def _reference_line(event: DomainEvent) -> str:
    """What audit_line wrote before it was written by hand (kept verbatim as the reference)."""
    record: dict[str, object] = {"event": event.name}
    for key in sorted(event.payload):
        value = event.payload[key]
        if key in AUDITED_KEYS and (value is None or isinstance(value, str | int | bool)):
            record[key] = value
    return json.dumps(record, sort_keys=True, ensure_ascii=False)


class _Preset(enum.StrEnum):
    PRIVATE = "private_chat"


class _Count(enum.IntEnum):
    THREE = 3


PAYLOADS: list[tuple[str, dict[str, Any]]] = [
    ("empty", {}),
    (
        "room created",
        {"room_id": "!r:hs", "creator_id": "@a:hs", "preset": "public_chat", "room_version": "10"},
    ),
    (
        "room upgraded, keys out of order",
        {"new_version": "11", "room_id": "!o:hs", "old_room_id": "!o:hs", "new_room_id": "!n:hs"},
    ),
    (
        "unknown keys and values that are not scalars are left out",
        {
            "room_id": "!r:hs",
            "access_token": "syt_secret",
            "content": {"body": "hi"},
            "reason": ["a", "list"],
            "user_id": {"nested": 1},
        },
    ),
    (
        "None, booleans and numbers",
        {"reason": None, "preset": True, "room_version": False, "user_id": 12, "room_id": -7},
    ),
    ("a big number", {"reason": 10**40}),
    ("enum values", {"preset": _Preset.PRIVATE, "room_version": _Count.THREE}),
    ("a float is not a scalar here", {"reason": 1.5}),
    ("non-ASCII", {"reason": "Café ☕ 𝄞 日本語", "user_id": "@ü:hs"}),
    ("quotes, backslashes, newlines", {"reason": 'say "no"\\\n\r\t\x00\x1f\x7f\u2028'}),
    ("a lone surrogate", {"reason": "bad \ud800 text"}),
]


@pytest.mark.parametrize("payload", [p for _, p in PAYLOADS], ids=[n for n, _ in PAYLOADS])
@pytest.mark.parametrize("name", [ROOM_CREATED, ROOM_UPGRADED, 'odd "name" é'])
def test_audit_line_is_the_line_json_dumps_wrote(name: str, payload: dict[str, Any]) -> None:
    event = DomainEvent(name, payload)
    assert audit_line(event) == _reference_line(event)


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(st.characters(exclude_categories=())),
    st.floats(),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=500)
@given(st.dictionaries(st.sampled_from(sorted(AUDITED_KEYS | {"event", "other"})), _scalars))
def test_any_payload_is_written_as_json_dumps_wrote_it(payload: dict[str, Any]) -> None:
    event = DomainEvent(ROOM_CREATED, payload)
    assert audit_line(event) == _reference_line(event)


def test_the_subscriber_logs_the_line(caplog: pytest.LogCaptureFixture) -> None:
    event = DomainEvent(ROOM_CREATED, {"room_id": "!r:hs", "preset": "trusted_private_chat"})
    with caplog.at_level(logging.INFO, logger="homeserver.audit"):
        audit_log_subscriber(event)
    assert [r.getMessage() for r in caplog.records if r.name == "homeserver.audit"] == [
        audit_line(event)
    ]
