"""The checks Synapse applies to a requested user name (``RegistrationHandler.check_username``)
and to passwords and device fields in account requests. Pure functions."""

from __future__ import annotations

import re
from typing import Any

from homeserver.errors import BadRequest, Codes

#: Synapse refuses longer passwords (argon2 would take them, but a bound keeps hashing cheap).
MAX_PASSWORD_LENGTH = 512
#: Longer user names are refused before any other check (Synapse: 512).
MAX_USERNAME_LENGTH = 512
#: A whole user ID is at most 255 bytes (spec, identifier grammar).
MAX_USER_ID_LENGTH = 255
#: Synapse's bound for device display names; longer initial names are cut, renames refused.
MAX_DEVICE_DISPLAY_NAME_LENGTH = 100
#: Device IDs are opaque to us; the bound only keeps hostile input out of the database.
MAX_DEVICE_ID_LENGTH = 255

_LOCALPART = re.compile(r"^[a-z0-9._=\-/+]+$")


def _invalid(message: str) -> BadRequest:
    return BadRequest(message, Codes.INVALID_USERNAME)


def check_localpart(localpart: str, server_name: str) -> str:
    """The user ID for a requested ``localpart``, or 400 ``M_INVALID_USERNAME`` saying why not.

    Numeric localparts are reserved (Synapse gives them to generated and guest accounts) and a
    leading ``_`` is kept for application services, as in Synapse."""
    if not localpart:
        raise _invalid("User ID cannot be empty")
    if not _LOCALPART.match(localpart):
        raise _invalid("User ID can only contain characters a-z, 0-9, or '=_-./+'")
    if localpart.startswith("_"):
        raise _invalid("User ID may not begin with _")
    if localpart.isdigit():
        raise _invalid("Numeric user IDs are reserved for guest users.")
    user_id = f"@{localpart}:{server_name}"
    if len(user_id.encode("utf-8")) > MAX_USER_ID_LENGTH:
        raise _invalid(f"User ID may not be longer than {MAX_USER_ID_LENGTH} characters")
    return user_id


def username_param(value: Any) -> str | None:
    """The ``username`` of a registration request, lowercased as Synapse does, or None."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_USERNAME_LENGTH or "\x00" in value:
        raise BadRequest("Invalid username", Codes.INVALID_USERNAME)
    return value.lower()


def password_param(value: Any, name: str = "password", *, required: bool = False) -> str | None:
    """A password field: a string of at most 512 characters without NUL (None when absent and
    not required)."""
    if value is None:
        if required:
            raise BadRequest(f"Missing parameter: {name}", Codes.MISSING_PARAM)
        return None
    if not isinstance(value, str) or len(value) > MAX_PASSWORD_LENGTH or "\x00" in value:
        raise BadRequest(f"Invalid {name}", Codes.INVALID_PARAM)
    return value


def device_id_param(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_DEVICE_ID_LENGTH:
        raise BadRequest("device_id must be a non-empty string", Codes.INVALID_PARAM)
    if "\x00" in value:
        raise BadRequest("device_id must not contain NUL", Codes.INVALID_PARAM)
    return value


def initial_device_name_param(value: Any) -> str | None:
    """``initial_device_display_name``: cut to 100 characters, as Synapse does."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest("initial_device_display_name must be a string", Codes.INVALID_PARAM)
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL; refuse it on both engines alike.
        raise BadRequest("initial_device_display_name must not contain NUL", Codes.INVALID_PARAM)
    return value[:MAX_DEVICE_DISPLAY_NAME_LENGTH]


def bool_param(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be a boolean", Codes.INVALID_PARAM)
    return value
