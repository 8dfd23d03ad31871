"""Shadow bans (Synapse's ``ShadowBanError``): a shadow-banned user's messages, state events,
redactions, invites, typing and receipts are answered as if accepted but never stored nor
delivered. Their joins and leaves go through as usual (as in Synapse).

The services that accept those actions from clients are given ``is_shadow_banned`` (the
in-memory set of ``storage/user_overrides.py``) and, for a banned sender, answer with
:func:`fake_event_id` before anything is built or stored.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

ShadowBanCheck = Callable[[str], bool]


def nobody(user_id: str) -> bool:
    """The check when no shadow bans are wired (unit tests, tools)."""
    return False


def fake_event_id() -> str:
    """An event ID shaped like a real one (``$`` and 43 URL-safe base64 characters, as
    Synapse's), naming no event."""
    return "$" + secrets.token_urlsafe(32)
