"""Shadow bans and suspensions.

Shadow bans (Synapse's ``ShadowBanError``): a shadow-banned user's messages, state events,
redactions, invites, typing and receipts are answered as if accepted but never stored nor
delivered. Their joins and leaves go through as usual (as in Synapse).

A suspended user (``PUT /_synapse/admin/v1/suspend/{u}``) is refused (403 ``M_USER_SUSPENDED``)
messages, state events, invites, joins, knocks and profile changes; redacting their own events
and leaving rooms stay allowed, as in Synapse.

The services that accept those actions from clients are given ``is_shadow_banned`` (the
in-memory set of ``storage/user_overrides.py``) and, for a banned sender, answer with
:func:`fake_event_id` before anything is built or stored.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from homeserver.errors import Codes, Forbidden

ShadowBanCheck = Callable[[str], bool]


def suspended_error(action: str) -> Forbidden:
    """Synapse's refusal of an action by a suspended user (403 ``M_USER_SUSPENDED``)."""
    return Forbidden(f"{action} while account is suspended is not allowed.", Codes.USER_SUSPENDED)


def nobody(user_id: str) -> bool:
    """The check when no shadow bans are wired (unit tests, tools)."""
    return False


def fake_event_id() -> str:
    """An event ID shaped like a real one (``$`` and 43 URL-safe base64 characters, as
    Synapse's), naming no event."""
    return "$" + secrets.token_urlsafe(32)
