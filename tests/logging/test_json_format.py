"""JSON lines: one object per record, with the request/user/room/transaction context."""

from __future__ import annotations

import json
import logging
import re
import sys

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
