"""Errors raised by the stores (the database drivers' own errors pass through unchanged)."""

from __future__ import annotations

from http import HTTPStatus

from homeserver.errors import Codes, MatrixError


class StorageError(Exception):
    """Base class of the stores' own errors."""


class UnknownRoomError(StorageError, LookupError):
    """Events were persisted for a room that has no ``rooms`` row (create it first, or in the
    same call with ``new_room=``)."""

    def __init__(self, room_id: str) -> None:
        super().__init__(f"unknown room {room_id}")
        self.room_id = room_id


class UnknownStateGroupError(StorageError, LookupError):
    def __init__(self, state_group: int) -> None:
        super().__init__(f"unknown state group {state_group}")
        self.state_group = state_group


class DatabaseUnavailable(StorageError, MatrixError):
    """The database cannot be reached right now (connection refused or lost, server shutting
    down or out of connections). Requests answer 503 ``M_UNKNOWN`` — never 500 — and work again
    on their own once the database is back: the pool reconnects on the next request."""

    def __init__(self) -> None:
        MatrixError.__init__(
            self,
            HTTPStatus.SERVICE_UNAVAILABLE,
            Codes.UNKNOWN,
            "The database is temporarily unavailable",
        )


class LockTimeout(DatabaseUnavailable):
    """A database lock was not obtained in time (another process held it throughout): 503,
    and the caller (a remote server's transaction) retries later."""

    def __init__(self, what: str = "") -> None:
        super().__init__()
        self.what = what
