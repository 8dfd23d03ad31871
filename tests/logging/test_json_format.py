"""JSON lines: one object per record, with the request/user/room/transaction context."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.logging import context as log_context
from homeserver.logging.context import LogContextFilter
from homeserver.logging.json_format import JsonFormatter


def _record(msg: str = "hello %s", *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise KeyError("missing")
        except KeyError:
            exc_info = sys.exc_info()
    return logging.LogRecord(
        "homeserver.test", logging.WARNING, __file__, 7, msg, args or ("world",), exc_info
    )


def test_minimal_line_has_ts_level_logger_message_and_no_unknown_context() -> None:
    line = json.loads(JsonFormatter().format(_record()))
    assert set(line) == {"ts", "level", "logger", "message"}
    assert line["level"] == "WARNING"
    assert line["logger"] == "homeserver.test"
    assert line["message"] == "hello world"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])


def test_context_bound_in_the_task_appears_on_the_line() -> None:
    with log_context.bound(request="PUT-3", user="@a:hs", room="!r:hs", txn="persist_event"):
        record = _record()
        LogContextFilter().filter(record)
    # Stamped on the record at filter time: formatting later (another context) keeps it.
    line = json.loads(JsonFormatter().format(record))
    assert line["request"] == "PUT-3"
    assert line["user"] == "@a:hs"
    assert line["room"] == "!r:hs"
    assert line["txn"] == "persist_event"


def test_without_the_filter_the_formatter_reads_the_context_itself() -> None:
    with log_context.bound(request="GET-9"):
        line = json.loads(JsonFormatter().format(_record()))
    assert line["request"] == "GET-9"
    assert "user" not in line


def test_unbinding_restores_the_outer_values() -> None:
    outer = log_context.bind(request="GET-1", user=None)
    inner = log_context.bind(user="@b:hs")
    log_context.unbind(inner)
    assert log_context.user_id.get() is None
    assert log_context.request_id.get() == "GET-1"
    log_context.unbind(outer)
    assert log_context.request_id.get() is None


def test_exception_is_one_field_and_the_line_stays_one_line() -> None:
    text = JsonFormatter().format(_record("failed %s", exc=True))
    assert "\n" not in text
    line = json.loads(text)
    assert line["exc"].startswith("Traceback (most recent call last):")
    assert "KeyError: 'missing'" in line["exc"]


def test_non_ascii_and_odd_values_are_kept_readable() -> None:
    line = json.loads(JsonFormatter().format(_record("room %s", "Café ☕")))
    assert line["message"] == "room Café ☕"


def test_request_ids_are_unique_and_name_the_method() -> None:
    first, second = log_context.new_request_id("GET"), log_context.new_request_id("POST")
    assert first.startswith("GET-") and second.startswith("POST-")
    assert first.split("-")[1] != second.split("-")[1]


# --- the same line as json.dumps --------------------------------------------------------------
# The formatter writes its line by hand; these hold it to what the former implementation wrote
# (kept here verbatim as the reference) byte for byte.


def _reference_line(formatter: JsonFormatter, record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    line: dict[str, object] = {
        "ts": f"{seconds}.{int(record.msecs):03d}Z",
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
    }
    for name, var in log_context.FIELDS.items():
        value = getattr(record, name, None) if hasattr(record, name) else var.get()
        if value is not None:
            line[name] = value
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    if record.exc_text:
        line["exc"] = record.exc_text
    if record.stack_info:
        line["stack"] = formatter.formatStack(record.stack_info)
    return json.dumps(line, ensure_ascii=False, default=str)


class _Opaque:
    def __str__(self) -> str:
        return 'opaque "thing"\n'


def _at(record: logging.LogRecord, created: float) -> logging.LogRecord:
    """``record`` as if made at ``created`` (``msecs`` as LogRecord computes it)."""
    record.created = created
    record.msecs = int((created - int(created)) * 1000) + 0.0
    return record


def _with(record: logging.LogRecord, **attributes: object) -> logging.LogRecord:
    record.__dict__.update(attributes)
    return record


CONTROL = "".join(chr(c) for c in range(0x20)) + "\x7f\x80\x9f"
RECORDS: list[tuple[str, Callable[[], logging.LogRecord]]] = [
    ("plain", lambda: _record()),
    ("non-ASCII", lambda: _record("room %s", "Café ☕ Ελληνικά 日本語 עברית")),
    ("astral characters", lambda: _record("%s", "𝄞 🏳️‍🌈 \U0010ffff")),
    ("newlines, tabs and carriage returns", lambda: _record("%s", "a\nb\r\nc\td")),
    ("every control character", lambda: _record("%s", CONTROL)),
    ("line and paragraph separators", lambda: _record("%s", "a\u2028b\u2029c\u0085")),
    ("quotes and backslashes", lambda: _record("%s", 'say "hi" \\ \\" \'quote\' \\u0041')),
    ("a lone surrogate", lambda: _record("%s", "broken \ud800 text \udfff")),
    ("an empty message", lambda: _record("%s", "")),
    ("an exception", lambda: _record("failed %s", exc=True)),
    (
        "an exception already formatted",
        lambda: _with(_record(), exc_text='Traceback:\n  File "x", line 1\nKeyError: "é"'),
    ),
    ("a stack", lambda: _with(_record(), stack_info="Stack (most recent call last):\n  x\n  y")),
    (
        "context fields of every kind",
        lambda: _with(
            _record(),
            request="PUT-3",
            user="@ü:hs",
            room=None,
            txn=7,
        ),
    ),
    (
        "context fields json cannot write by itself",
        lambda: _with(_record(), request=_Opaque(), user=b"bytes\x00", room=3.25, txn=[1, "x"]),
    ),
    (
        "context fields that are containers and odd numbers",
        lambda: _with(
            _record(), request={"k": ["v", None, True]}, user=float("nan"), room=10**30, txn=-0.0
        ),
    ),
    (
        "a level name and logger name of its own",
        lambda: _with(_record(), levelname='LEVEL "5"', name="homeserver.tëst\n"),
    ),
    ("a message that is not a string", lambda: _with(_record(), msg={"a": 1}, args=None)),
    ("the epoch", lambda: _at(_record(), 0.0)),
    ("before the epoch", lambda: _at(_record(), -0.5)),
    ("a whole second", lambda: _at(_record(), 1_738_324_800.0)),
    ("the last millisecond of a second", lambda: _at(_record(), 1_738_324_800.9999)),
    ("far in the future", lambda: _at(_record(), 32_503_680_000.123)),
]


@pytest.mark.parametrize("make", [m for _, m in RECORDS], ids=[name for name, _ in RECORDS])
def test_line_is_the_one_json_dumps_wrote(make: Callable[[], logging.LogRecord]) -> None:
    ours, theirs = make(), make()
    theirs.created, theirs.msecs = ours.created, ours.msecs
    line = JsonFormatter().format(ours)
    assert line == _reference_line(JsonFormatter(), theirs)
    assert "\n" not in line and "\r" not in line


def test_context_bound_but_not_stamped_is_written_as_json_dumps_wrote_it() -> None:
    ours, theirs = _record(), _record()
    theirs.created, theirs.msecs = ours.created, ours.msecs
    with log_context.bound(request="GET-9", user="@é:hs", room="!r:hs", txn="t\n"):
        assert JsonFormatter().format(ours) == _reference_line(JsonFormatter(), theirs)


def test_one_formatter_across_seconds_writes_each_line_as_json_dumps_did() -> None:
    # The formatted second is remembered from one line to the next: it must follow the clock
    # forwards, backwards and across the boundary of a second.
    formatter = JsonFormatter()
    base = 1_738_324_800.0
    for created in (base, base + 0.5, base + 0.999, base + 1.0, base - 0.001, base, base + 86_400):
        record = _at(_record(), created)
        assert formatter.format(record) == _reference_line(formatter, record)
    assert json.loads(formatter.format(_at(_record(), base + 1.25)))["ts"] == (
        "2025-01-31T12:00:01.250Z"
    )


@settings(max_examples=500)
@given(
    message=st.text(st.characters(exclude_categories=())),  # lone surrogates too
    request=st.one_of(st.none(), st.text(), st.integers(), st.floats(), st.booleans()),
    created=st.floats(min_value=0, max_value=4_102_444_800),
)
def test_any_text_is_written_as_json_dumps_wrote_it(
    message: str, request: object, created: float
) -> None:
    def make() -> logging.LogRecord:
        return _at(_with(_record("%s", message), request=request), created)

    assert JsonFormatter().format(make()) == _reference_line(JsonFormatter(), make())
