"""One JSON object per log line: what log shippers (Loki, Elasticsearch, journald → jq) read
without a parsing rule.

``{"ts": "2025-01-31T12:00:00.123Z", "level": "INFO", "logger": "homeserver.access",
"message": "...", "request": "GET-17", "user": "@a:hs", "room": "!r:hs", "txn": "persist_event"}``
— ``request``/``user``/``room``/``txn`` only when known, ``exc`` (the traceback) and ``stack``
when present. Use it in a ``log_config`` as
``formatters: {json: {(): homeserver.logging.JsonFormatter}}``.

The line is exactly what ``json.dumps(fields, ensure_ascii=False, default=str)`` writes, but put
together by hand: the keys are fixed ASCII, and their values are nearly always strings, which go
through the very encoder ``json.dumps`` uses for strings (non-ASCII kept, newlines escaped, so a
traceback never splits the line). Every line of the server passes here, and ``json.dumps``,
which makes a new encoder per call, was nearly half of the formatting's time.
"""

from __future__ import annotations

import json
import logging
import math
import time
from json.encoder import encode_basestring

from homeserver.logging.context import FIELDS

#: ``json.dumps``'s encoder for a value that is not a string (an ``extra=`` field of another
#: type), made once where ``json.dumps`` makes one per call.
_OTHER_VALUES = json.JSONEncoder(ensure_ascii=False, default=str)
_FIELD_ITEMS = tuple(FIELDS.items())


def _json_value(value: object) -> str:
    """``value`` as ``json.dumps(..., ensure_ascii=False, default=str)`` writes it in an object."""
    if isinstance(value, str):
        return encode_basestring(value)
    return _OTHER_VALUES.encode(value)


class JsonFormatter(logging.Formatter):
    #: the whole second last formatted and its text: a line names the same second as the one
    #: before it nearly always, and ``time.strftime`` was a fifth of the formatter's time.
    _second: tuple[float, str] = (math.nan, "")

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            '{"ts": ',
            _json_value(self.formatTime(record)),
            ', "level": ',
            _json_value(record.levelname),
            ', "logger": ',
            _json_value(record.name),
            ', "message": ',
            _json_value(record.getMessage()),
        ]
        stamped = record.__dict__
        for name, var in _FIELD_ITEMS:
            # Stamped by LogContextFilter; read directly when that filter is not installed.
            value = stamped[name] if name in stamped else var.get()
            if value is not None:
                parts += (', "', name, '": ', _json_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            parts += (', "exc": ', _json_value(record.exc_text))
        if record.stack_info:
            parts += (', "stack": ', _json_value(self.formatStack(record.stack_info)))
        parts.append("}")
        return "".join(parts)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """RFC 3339 in UTC with milliseconds (``datefmt`` is ignored: one format for all)."""
        whole = math.floor(record.created)
        second, text = self._second
        if whole != second:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            # One tuple, replaced whole: a thread reading it meanwhile sees a matching pair.
            self._second = (whole, text)
        return f"{text}.{int(record.msecs):03d}Z"
