"""The one answer to "which address is this request from?", for per-address rate limits and
the access log.

Without ``x_forwarded`` it is the TCP peer. Behind a reverse proxy (``x_forwarded: true`` on the
listener) it is the last ``X-Forwarded-For`` entry: the one the proxy appended for the peer it
saw. Earlier entries were written by whoever sent the request and prove nothing, so trusting
them would let a client choose its own rate-limit bucket. A malformed last entry falls back to
the peer, so a broken proxy config degrades to one shared bucket rather than to no limit.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

#: Whether the listener serving this application sits behind a trusted reverse proxy.
TRUST_X_FORWARDED = web.AppKey("trust_x_forwarded", bool)

UNKNOWN = "unknown"
#: Longer than any IP address; a longer entry is not parsed at all.
_MAX_ENTRY_LENGTH = 64


def address_from(peer: str | None, forwarded_for: Sequence[str], *, trusted: bool) -> str:
    """The client address given the peer's and the ``X-Forwarded-For`` header values."""
    fallback = peer or UNKNOWN
    if not trusted or not forwarded_for:
        return fallback
    last = forwarded_for[-1].rsplit(",", 1)[-1].strip()
    if not last or len(last) > _MAX_ENTRY_LENGTH:
        return fallback
    try:
        return str(ipaddress.ip_address(last))
    except ValueError:
        return fallback


def client_address(request: web.Request) -> str:
    """The address of the client that sent ``request`` (see the module docstring)."""
    return address_from(
        request.remote,
        request.headers.getall("X-Forwarded-For", ()),
        trusted=request.app.get(TRUST_X_FORWARDED, False),
    )
