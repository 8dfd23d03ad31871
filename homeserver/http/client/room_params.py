"""Small parsers shared by the room endpoints (membership, send, state, reads): reason,
target user ID, transaction scope, query integers. Bad input is a 400, never a 500."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.errors import BadRequest, Codes
from homeserver.http.auth import Requester
from homeserver.types import user_id_error


def optional_reason(body: dict[str, Any]) -> str | None:
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise BadRequest("'reason' must be a string", Codes.BAD_JSON)
    return reason


def required_user_id(body: dict[str, Any]) -> str:
    user_id = body.get("user_id")
    if user_id is None:
        raise BadRequest("Missing 'user_id'", Codes.MISSING_PARAM)
    if not isinstance(user_id, str):
        raise BadRequest("'user_id' must be a string", Codes.BAD_JSON)
    reason = user_id_error(user_id, historical=True)
    if reason:
        raise BadRequest(f"Invalid user_id: {reason}", Codes.INVALID_PARAM)
    return user_id


def txn_scope(requester: Requester) -> str:
    """Transaction IDs are scoped to the device; a token without a device is its own scope."""
    if requester.device_id is not None:
        return requester.device_id
    return "token:" + requester.token_hash


def query_int(
    request: web.Request, name: str, default: int, *, minimum: int = 0, maximum: int
) -> int:
    """An integer query parameter, clamped to ``[minimum, maximum]``."""
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"'{name}' must be an integer", Codes.INVALID_PARAM) from None
    return max(minimum, min(maximum, value))
