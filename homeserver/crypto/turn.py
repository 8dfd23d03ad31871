"""Time-limited TURN credentials, the "TURN REST API" coturn implements (``use-auth-secret``):
the username is ``<expiry in seconds>:<user ID>`` and the password the base64 (padded, as
coturn expects) HMAC-SHA1 of the username under the secret shared with the TURN server."""

from __future__ import annotations

import base64
import hashlib
import hmac


def turn_credentials(shared_secret: str, user_id: str, expires_s: int) -> tuple[str, str]:
    """``(username, password)`` valid until ``expires_s`` (seconds since the epoch)."""
    username = f"{expires_s}:{user_id}"
    mac = hmac.new(shared_secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(mac).decode("ascii")
