"""Matrix identifiers and their grammar (spec appendix "Identifier Grammar").

Checks are pure functions returning a reason string (``None`` when valid) so that callers can
name the failure in their error.
"""

from __future__ import annotations

import re

MAX_IDENTIFIER_BYTES = 255

_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_IPV6_LITERAL = re.compile(r"^\[[0-9A-Fa-f:.]{2,45}\]$")
_DNS_NAME = re.compile(r"^[A-Za-z0-9\-.]{1,255}$")
_PORT = re.compile(r"^\d{1,5}$")
_USER_LOCALPART = re.compile(r"^[a-z0-9._=\-/+]+$")
_NAMESPACED = re.compile(r"^[a-z][a-z0-9\-_.]{0,254}$")
_ROOM_VERSION = re.compile(r"^[a-z0-9.\-]{1,32}$")


def server_name_error(name: str) -> str | None:
    """Why ``name`` is not a valid server name, or None."""
    if not isinstance(name, str) or not name:
        return "server name is empty"
    host, port = name, None
    if name.startswith("["):
        end = name.find("]")
        if end == -1:
            return "server name has an unterminated IPv6 literal"
        host, rest = name[: end + 1], name[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return "server name has junk after the IPv6 literal"
            port = rest[1:]
        if not _IPV6_LITERAL.match(host):
            return "server name has an invalid IPv6 literal"
    else:
        if ":" in name:
            host, port = name.rsplit(":", 1)
        if not (_IPV4.match(host) or _DNS_NAME.match(host)):
            return "server name has an invalid host"
    if port is not None and (not _PORT.match(port) or not 0 < int(port) < 65536):
        return "server name has an invalid port"
    return None


def is_valid_server_name(name: str) -> bool:
    return server_name_error(name) is None


def _split(identifier: str, sigil: str) -> tuple[str, str] | None:
    if not isinstance(identifier, str) or not identifier.startswith(sigil):
        return None
    localpart, sep, domain = identifier[1:].partition(":")
    if not sep:
        return None
    return localpart, domain


def _too_long(identifier: str) -> bool:
    return len(identifier.encode("utf-8")) > MAX_IDENTIFIER_BYTES


def user_id_error(user_id: str, *, historical: bool = False) -> str | None:
    """Why ``user_id`` is not a valid user ID. ``historical`` accepts the older, wider grammar
    that events received over federation may still use."""
    parts = _split(user_id, "@")
    if parts is None:
        return "user ID must look like @localpart:server"
    localpart, domain = parts
    if _too_long(user_id):
        return "user ID is longer than 255 bytes"
    if server_name_error(domain):
        return "user ID has an invalid server name"
    if historical:
        if "\x00" in localpart:
            return "user ID localpart contains NUL"
    elif not _USER_LOCALPART.match(localpart):
        return "user ID localpart has characters outside a-z 0-9 . _ = - / +"
    return None


def is_valid_user_id(user_id: str, *, historical: bool = False) -> bool:
    return user_id_error(user_id, historical=historical) is None


def domain_of(identifier: str) -> str:
    """The server name of an identifier such as ``@user:server`` or ``!room:server``."""
    return identifier.split(":", 1)[1]


def room_alias_error(alias: str) -> str | None:
    parts = _split(alias, "#")
    if parts is None:
        return "room alias must look like #localpart:server"
    localpart, domain = parts
    if _too_long(alias):
        return "room alias is longer than 255 bytes"
    if "\x00" in localpart:
        return "room alias localpart contains NUL"
    if server_name_error(domain):
        return "room alias has an invalid server name"
    return None


def room_id_error(room_id: str) -> str | None:
    """Room IDs: ``!opaque:server`` (v1-v11) or ``!`` + 43 URL-safe base64 chars (v12)."""
    if not isinstance(room_id, str) or not room_id.startswith("!") or len(room_id) < 2:
        return "room ID must start with !"
    if _too_long(room_id):
        return "room ID is longer than 255 bytes"
    if "\x00" in room_id:
        return "room ID contains NUL"
    if ":" in room_id:
        domain = room_id[1:].split(":", 1)[1]
        if server_name_error(domain):
            return "room ID has an invalid server name"
    return None


def event_id_error(event_id: str) -> str | None:
    if not isinstance(event_id, str) or not event_id.startswith("$") or len(event_id) < 2:
        return "event ID must start with $"
    if _too_long(event_id):
        return "event ID is longer than 255 bytes"
    if "\x00" in event_id:
        return "event ID contains NUL"
    return None


def is_valid_namespaced_identifier(name: str) -> bool:
    return isinstance(name, str) and bool(_NAMESPACED.match(name))


def is_valid_room_version_string(name: str) -> bool:
    return isinstance(name, str) and bool(_ROOM_VERSION.match(name))
