"""What a log line is about: the request, the user, the room and the database transaction.

Each is a ``ContextVar``, so it follows the asyncio task that handles one request (and tasks it
spawns) without being passed around. The HTTP middleware binds the request ID and room, the
authentication step the user, ``Database.transaction`` the transaction name; ``LogContextFilter``
copies them onto every record (``%(request)s`` … in a ``log_config`` format, and the fields of
the JSON lines).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

request_id: ContextVar[str | None] = ContextVar("homeserver_log_request", default=None)
user_id: ContextVar[str | None] = ContextVar("homeserver_log_user", default=None)
room_id: ContextVar[str | None] = ContextVar("homeserver_log_room", default=None)
transaction: ContextVar[str | None] = ContextVar("homeserver_log_txn", default=None)

#: record attribute → the variable it is read from (also the JSON field names).
FIELDS: dict[str, ContextVar[str | None]] = {
    "request": request_id,
    "user": user_id,
    "room": room_id,
    "txn": transaction,
}

_FIELD_ITEMS = tuple(FIELDS.items())

_request_numbers = itertools.count(1)


def new_request_id(method: str) -> str:
    """``GET-17``: Synapse's shape, unique within the process's lifetime."""
    return f"{method}-{next(_request_numbers)}"


Bindings = list[tuple[ContextVar[str | None], Token[str | None]]]


def bind(**values: str | None) -> Bindings:
    """Set some of ``request``, ``user``, ``room``, ``txn``; pass the result to :func:`unbind`."""
    return [(FIELDS[name], FIELDS[name].set(value)) for name, value in values.items()]


def unbind(bindings: Bindings) -> None:
    for var, token in reversed(bindings):
        var.reset(token)


@contextmanager
def bound(**values: str | None) -> Iterator[None]:
    bindings = bind(**values)
    try:
        yield
    finally:
        unbind(bindings)


class LogContextFilter(logging.Filter):
    """Stamps ``request``, ``user``, ``room`` and ``txn`` (``None`` when unknown) on each
    record; installed on every handler, so a format string may always name them."""

    def filter(self, record: logging.LogRecord) -> bool:
        # The record's own dict, where ``extra=`` puts values (LogRecord has no class attribute
        # of these names): half the cost of hasattr/setattr, on a filter every line passes.
        stamped = record.__dict__
        for name, var in _FIELD_ITEMS:
            if name not in stamped:
                stamped[name] = var.get()
        return True
