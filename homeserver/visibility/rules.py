"""Whether one event is visible to one user (the client-server API's "History visibility"
algorithm) or to one server (the server-server API's "Serving events to servers"), as pure
functions of what is known about the event and the user or server (no I/O).

An event is visible when, at the event,

1. the room was ``world_readable``, or
2. the user was joined, or
3. the room was ``shared`` and the user was joined at some point at or after the event, or
4. the room was ``invited`` and the user was invited;

otherwise not. "At the event" is the state just before it, with two refinements Synapse makes
(``synapse/visibility.py``) so that the boundaries of a change stay visible:

* an ``m.room.history_visibility`` event is judged by the more permissive of the visibility
  before it and the one it sets (whoever could see either side sees the change);
* the user's own membership event is judged by the more joined of their membership before and
  after it, and their own leave (or rejection) after a join or invite is always visible (they
  see themselves leave the room).

A missing or unknown ``history_visibility`` counts as ``shared``; an unknown membership as none.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

WORLD_READABLE: Final = "world_readable"
SHARED: Final = "shared"
INVITED: Final = "invited"
JOINED: Final = "joined"
#: most permissive first.
VISIBILITY_ORDER: Final = (WORLD_READABLE, SHARED, INVITED, JOINED)
#: most joined first (Synapse's order): the membership that sees the most wins on a boundary.
MEMBERSHIP_ORDER: Final = ("join", "invite", "knock", "leave", "ban")


def effective_visibility(value: object) -> str:
    """The ``history_visibility`` a content value means (missing or unknown: ``shared``)."""
    return value if isinstance(value, str) and value in VISIBILITY_ORDER else SHARED


def _membership(value: object) -> str | None:
    return value if isinstance(value, str) and value in MEMBERSHIP_ORDER else None


def _more_permissive(a: str, b: str) -> str:
    return a if VISIBILITY_ORDER.index(a) <= VISIBILITY_ORDER.index(b) else b


def _more_joined(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return a if MEMBERSHIP_ORDER.index(a) <= MEMBERSHIP_ORDER.index(b) else b


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What the rule needs to know about one event, for one user."""

    #: the room's history visibility in the state before the event (raw content value).
    visibility_before: object
    #: the user's membership in the state before the event (None: none).
    membership_before: str | None
    #: whether the user was joined at some point at or after the event (currently joined, or a
    #: join of theirs at or after the event's stream position).
    joined_later: bool
    #: for an ``m.room.history_visibility`` event: the visibility it sets (raw content value).
    sets_visibility: object = None
    is_visibility_event: bool = False
    #: for the user's own ``m.room.member`` event: the membership it sets.
    own_membership: str | None = None
    is_own_membership_event: bool = False


def event_visible(facts: EventFacts) -> bool:
    visibility = effective_visibility(facts.visibility_before)
    if facts.is_visibility_event:
        visibility = _more_permissive(visibility, effective_visibility(facts.sets_visibility))
    membership = _membership(facts.membership_before)
    if facts.is_own_membership_event:
        own = _membership(facts.own_membership) or "leave"
        if own == "leave" and membership in ("join", "invite"):
            return True
        membership = _more_joined(membership, own)
    if visibility == WORLD_READABLE or membership == "join":
        return True
    if visibility == SHARED:
        return facts.joined_later
    if visibility == INVITED:
        return membership == "invite"
    return False


def state_visible_at(visibility_value: object, membership: object, *, joined_later: bool) -> bool:
    """Whether a user may read the room's state at a point (``/members?at=``), given the
    visibility and their membership in that state, as Synapse's ``_user_can_see_state_at_event``:
    an invite there is enough unless the room was ``joined``; ``shared`` state is readable to
    whoever joined at some point since (Synapse asks for a current join; a departed member's
    ``at`` is capped at their leave, which their join precedes)."""
    visibility = effective_visibility(visibility_value)
    if membership == "join":
        return True
    if visibility == JOINED:
        return False
    if membership == "invite":
        return True
    if visibility == INVITED:
        return False
    return visibility == WORLD_READABLE or joined_later


def server_may_see(visibility_value: object, memberships: Collection[str | None]) -> bool:
    """Whether a server with a user joined to the room now may see an event in full, given the
    room's history visibility at the event (raw content value; missing or unknown: ``shared``)
    and the memberships there of the server's users (Synapse's ``filter_events_for_server``):
    ``shared`` shows it what came while it was out."""
    visibility = effective_visibility(visibility_value)
    if visibility == JOINED:
        return "join" in memberships
    if visibility == INVITED:
        return any(m in ("join", "invite") for m in memberships)
    return True


def event_visible_to_server(
    visibility_value: object, memberships: Collection[str | None], *, sender_erased: bool
) -> bool:
    """The whole per-event rule for servers: an event whose sender has been erased (only our
    own users can be) is never served in full, whatever the visibility (Synapse's
    ``filter_out_erased_senders`` on /event, /backfill and /get_missing_events)."""
    return not sender_erased and server_may_see(visibility_value, memberships)
