"""``m.room.server_acl`` matching (spec: "Server Access Control Lists").

Pure. A server name is matched without its port and case-insensitively; ``*`` matches any run
of characters (including none) and ``?`` exactly one. ``deny`` is checked before ``allow``, an
absent or empty ``allow`` lets nobody in, and ``allow_ip_literals: false`` refuses servers named
by an IP address (v4, or v6 in brackets) whatever the lists say.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

ACL_EVENT_TYPE = "m.room.server_acl"


def _host_of(server_name: str) -> str:
    """``server_name`` without its port (an IPv6 literal keeps its brackets)."""
    if server_name.startswith("["):
        end = server_name.find("]")
        return server_name if end == -1 else server_name[: end + 1]
    return server_name.rsplit(":", 1)[0] if ":" in server_name else server_name


def _is_ip_literal(host: str) -> bool:
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=1024)
def _glob_regex(glob: str) -> re.Pattern[str]:
    parts = ("." if c == "?" else ".*" if c == "*" else re.escape(c) for c in glob)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _matches_any(host: str, globs: Any) -> bool:
    if not isinstance(globs, list):
        return False
    # Entries that are not strings are ignored, as Synapse does, rather than failing the room.
    return any(isinstance(g, str) and _glob_regex(g).fullmatch(host) for g in globs)


def server_allowed_by_acl(acl_content: Mapping[str, Any] | None, server_name: str) -> bool:
    """Whether the room's server ACL (the event's content; None: no ACL) lets
    ``server_name`` take part in the room."""
    if acl_content is None:
        return True
    host = _host_of(server_name)
    # A non-boolean flag is ignored (treated as the default, true), as Synapse does.
    if acl_content.get("allow_ip_literals", True) is False and _is_ip_literal(host):
        return False
    if _matches_any(host, acl_content.get("deny")):
        return False
    return _matches_any(host, acl_content.get("allow"))
