"""One JSON object per log line: what log shippers (Loki, Elasticsearch, journald → jq) read
without a parsing rule.

``{"ts": "2025-01-31T12:00:00.123Z", "level": "INFO", "logger": "homeserver.access",
"message": "...", "request": "GET-17", "user": "@a:hs", "room": "!r:hs", "txn": "persist_event"}``
— ``request``/``user``/``room``/``txn`` only when known, ``exc`` (the traceback) and ``stack``
when present. Use it in a ``log_config`` as
``formatters: {json: {(): homeserver.logging.JsonFormatter}}``.
"""

from __future__ import annotations

import json
import logging
import time

from homeserver.logging.context import FIELDS


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, var in FIELDS.items():
            # Stamped by LogContextFilter; read directly when that filter is not installed.
            value = getattr(record, name, None) if hasattr(record, name) else var.get()
            if value is not None:
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # ensure_ascii=False keeps non-ASCII readable; json.dumps escapes newlines, so a
        # traceback never splits the line.
        return json.dumps(line, ensure_ascii=False, default=str)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """RFC 3339 in UTC with milliseconds (``datefmt`` is ignored: one format for all)."""
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"
