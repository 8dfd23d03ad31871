"""Matrix errors: an HTTP status, an ``errcode`` and a message safe to show a client."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class Codes:
    FORBIDDEN = "M_FORBIDDEN"
    UNKNOWN_TOKEN = "M_UNKNOWN_TOKEN"
    UNAUTHORIZED = "M_UNAUTHORIZED"
    MISSING_TOKEN = "M_MISSING_TOKEN"
    BAD_JSON = "M_BAD_JSON"
    NOT_JSON = "M_NOT_JSON"
    NOT_FOUND = "M_NOT_FOUND"
    LIMIT_EXCEEDED = "M_LIMIT_EXCEEDED"
    UNRECOGNIZED = "M_UNRECOGNIZED"
    UNKNOWN = "M_UNKNOWN"
    MISSING_PARAM = "M_MISSING_PARAM"
    INVALID_PARAM = "M_INVALID_PARAM"
    TOO_LARGE = "M_TOO_LARGE"
    UNSUPPORTED_ROOM_VERSION = "M_UNSUPPORTED_ROOM_VERSION"
    INCOMPATIBLE_ROOM_VERSION = "M_INCOMPATIBLE_ROOM_VERSION"
    ROOM_IN_USE = "M_ROOM_IN_USE"
    INVALID_ROOM_STATE = "M_INVALID_ROOM_STATE"
    BAD_STATE = "M_BAD_STATE"
    USER_IN_USE = "M_USER_IN_USE"
    USER_SUSPENDED = "M_USER_SUSPENDED"
    INVALID_USERNAME = "M_INVALID_USERNAME"
    EXCLUSIVE = "M_EXCLUSIVE"
    GUEST_ACCESS_FORBIDDEN = "M_GUEST_ACCESS_FORBIDDEN"
    CANNOT_OVERWRITE_MEDIA = "M_CANNOT_OVERWRITE_MEDIA"
    NOT_YET_UPLOADED = "M_NOT_YET_UPLOADED"
    WRONG_ROOM_KEYS_VERSION = "M_WRONG_ROOM_KEYS_VERSION"


class MatrixError(Exception):
    """An error a client or peer may see. ``message`` must never hold internals."""

    def __init__(
        self,
        status: int,
        errcode: str,
        message: str,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = int(status)
        self.errcode = errcode
        self.message = message
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        return {"errcode": self.errcode, "error": self.message, **self.extra}


class BadRequest(MatrixError):
    def __init__(self, message: str, errcode: str = Codes.BAD_JSON, **extra: Any) -> None:
        super().__init__(HTTPStatus.BAD_REQUEST, errcode, message, **extra)


class Forbidden(MatrixError):
    def __init__(self, message: str, errcode: str = Codes.FORBIDDEN) -> None:
        super().__init__(HTTPStatus.FORBIDDEN, errcode, message)


class NotFound(MatrixError):
    def __init__(self, message: str = "Not found", errcode: str = Codes.NOT_FOUND) -> None:
        super().__init__(HTTPStatus.NOT_FOUND, errcode, message)


class UnsupportedRoomVersionError(MatrixError):
    def __init__(self) -> None:
        super().__init__(
            HTTPStatus.BAD_REQUEST,
            Codes.UNSUPPORTED_ROOM_VERSION,
            "The requested room version is not supported by this server",
        )


class UpgradeInProgress(BadRequest):
    """A room whose upgrade is under way refuses another upgrade and a client's tombstone
    until it ends. ``M_UNKNOWN``: Synapse's answer to a second upgrade of a room being
    upgraded (it has no code of its own), which clients retry on."""

    MESSAGE = "An upgrade for this room is currently in progress"

    def __init__(self) -> None:
        super().__init__(self.MESSAGE, Codes.UNKNOWN)
