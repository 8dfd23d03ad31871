"""Who may read a room, and events as clients see them (redactions applied).

Read access, simplified from the spec's history visibility rules:

* a joined member reads everything (``m.room.history_visibility`` ``joined``/``invited`` is not
  applied to the part of the history before they joined);
* in a ``world_readable`` room anyone reads everything;
* a former member (current membership ``leave`` or ``ban``) reads the room as it was up to their
  membership change: events up to that stream position, state as of that event (Synapse's rule);
* everyone else (including invited users) gets 403 ``M_FORBIDDEN``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.errors import Forbidden, NotFound
from homeserver.events.client_format import serialize_event
from homeserver.events.event import Event
from homeserver.storage import Store

NOT_A_MEMBER = "You aren't a member of the room"


@dataclass(frozen=True, slots=True)
class ReadAccess:
    #: the requester's current membership (None: never had one).
    membership: str | None
    #: the last stream position the requester may read; None when unbounded.
    up_to: int | None = None
    #: the membership event that ended their access (state is read as of this event).
    until_event_id: str | None = None

    def can_see(self, event: Event) -> bool:
        ordering = event.internal.stream_ordering
        return self.up_to is None or (ordering is not None and ordering <= self.up_to)


async def get_membership(store: Store, room_id: str, user_id: str) -> Event | None:
    """The user's current ``m.room.member`` event in the room, if any."""
    return await store.state.get_current_state_event(room_id, "m.room.member", user_id)


async def check_read_access(store: Store, room_id: str, user_id: str) -> ReadAccess:
    """404 for an unknown room, 403 for a user who may not read it."""
    if await store.rooms.get_room(room_id) is None:
        raise NotFound("Unknown room")
    member = await get_membership(store, room_id, user_id)
    membership = member.membership if member is not None else None
    if membership == "join":
        return ReadAccess("join")
    visibility = await store.state.get_current_state_event(room_id, "m.room.history_visibility", "")
    if visibility is not None and visibility.content.get("history_visibility") == "world_readable":
        return ReadAccess(membership)
    if member is not None and membership in ("leave", "ban"):
        return ReadAccess(membership, member.internal.stream_ordering, member.event_id)
    raise Forbidden(NOT_A_MEMBER)


async def serialize_for_client(
    store: Store, events: Sequence[Event], now_ms: int
) -> list[dict[str, Any]]:
    """Client JSON of ``events``; redacted ones pruned, with ``unsigned.redacted_because``."""
    targets = [e.event_id for e in events if e.internal.redacted]
    because: dict[str, Event] = {}
    if targets:
        redaction_ids = await store.room_use.get_redaction_ids(targets)
        found = await store.events.get_events(redaction_ids.values())
        because = {t: found[r] for t, r in redaction_ids.items() if r in found}
    out: list[dict[str, Any]] = []
    for event in events:
        if not event.internal.redacted:
            out.append(serialize_event(event, now_ms))
            continue
        unsigned: dict[str, Any] = {}
        redaction = because.get(event.event_id)
        if redaction is not None:
            unsigned["redacted_because"] = serialize_event(redaction, now_ms)
        out.append(serialize_event(event, now_ms, redacted=True, unsigned=unsigned))
    return out
