"""Turning the event builder's refusals into errors a client may see.

The auth rules and the format checks name the rule an event broke; clients get that as
403 ``M_FORBIDDEN`` / 400 ``M_BAD_JSON`` / 413 ``M_TOO_LARGE``, never a 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any

from homeserver.auth.rules import AuthError
from homeserver.crypto.canonical_json import encode_canonical_json
from homeserver.errors import BadRequest, Codes, Forbidden, MatrixError
from homeserver.events.validation import MAX_PDU_BYTES, EventValidationError

GENERIC_FORBIDDEN = "You are not allowed to send this event in this room"


def too_large() -> MatrixError:
    return MatrixError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, Codes.TOO_LARGE, "Event is too large")


def forbidden_from_auth(error: AuthError) -> Forbidden:
    # Rule names are fine to show; the auth_events bookkeeping ones talk about internals.
    reason = error.reason
    if reason.startswith("auth_events") or reason.startswith("room_id"):
        reason = GENERIC_FORBIDDEN
    return Forbidden(reason)


def check_content(content: Any) -> None:
    """Refuse content that cannot be an event's before building anything: not encodable
    (lone surrogates) → 400 ``M_BAD_JSON``; over 64 KiB → 413 ``M_TOO_LARGE``."""
    try:
        size = len(encode_canonical_json(content))
    except (ValueError, TypeError):  # UnicodeEncodeError is a ValueError
        raise BadRequest("Content is not valid JSON text", Codes.BAD_JSON) from None
    if size > MAX_PDU_BYTES:
        raise too_large()


@contextmanager
def client_event_errors() -> Iterator[None]:
    """Translate AuthError / EventValidationError raised while building and sending."""
    try:
        yield
    except AuthError as e:
        raise forbidden_from_auth(e) from None
    except EventValidationError as e:
        if e.reason.startswith("event is larger"):
            raise too_large() from None
        raise BadRequest(f"Invalid event: {e.reason}", Codes.BAD_JSON) from None
