"""The upgrade request (DESIGN.md §3.3 step 1): the body's fields checked before anything is
locked, and the refusal type that carries both the client's error and the reason named on
``room.upgrade.failed``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from homeserver.errors import BadRequest, Codes, MatrixError, UnsupportedRoomVersionError
from homeserver.room_versions import RoomVersion, UnsupportedRoomVersion, get_room_version
from homeserver.types import user_id_error

UPGRADE_FAILED = "Room upgrade could not be completed"


class UpgradeRefused(Exception):
    """The request fails with ``error``; ``reason`` names it on ``room.upgrade.failed``."""

    def __init__(self, reason: str, error: MatrixError) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


def upgrade_failed() -> MatrixError:
    return MatrixError(HTTPStatus.INTERNAL_SERVER_ERROR, Codes.UNKNOWN, UPGRADE_FAILED)


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    new_version: RoomVersion
    additional_creators: tuple[str, ...]


def parse_upgrade_body(body: Mapping[str, Any]) -> UpgradeRequest:
    invalid = "invalid_request"
    if "new_version" not in body:
        raise UpgradeRefused(
            invalid, BadRequest("Missing required parameter: new_version", Codes.MISSING_PARAM)
        )
    identifier = body["new_version"]
    try:
        if not isinstance(identifier, str):
            raise UnsupportedRoomVersion(str(identifier))
        version = get_room_version(identifier)
    except UnsupportedRoomVersion:
        raise UpgradeRefused("unsupported_version", UnsupportedRoomVersionError()) from None
    extra: tuple[str, ...] = ()
    raw = body.get("additional_creators")
    # Only versions with creators use the field; others ignore it (spec: still 200).
    if version.has_additional_creators and raw is not None:
        if not isinstance(raw, list):
            raise UpgradeRefused(
                invalid,
                BadRequest("additional_creators must be an array of user IDs", Codes.INVALID_PARAM),
            )
        for index, user_id in enumerate(raw):
            reason = user_id_error(user_id) if isinstance(user_id, str) else "not a string"
            if reason:
                raise UpgradeRefused(
                    invalid,
                    BadRequest(f"additional_creators[{index}]: {reason}", Codes.INVALID_PARAM),
                )
        extra = tuple(raw)
    return UpgradeRequest(version, extra)
