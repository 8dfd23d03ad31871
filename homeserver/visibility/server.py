"""History visibility for servers: which events of a room a server joined to it may see in
full (spec: server-server API "Serving events to servers"; Synapse's
``filter_events_for_server``). Federation serving (``/event``, ``/backfill``,
``/get_missing_events``) asks :func:`hidden_from` and serves the hidden events redacted.

Each event is judged by :func:`homeserver.visibility.rules.event_visible_to_server` from the
state *after* it (so a server's own invite or join is visible to it, and a visibility change
applies from its own event on). Outliers, whose state is unknown here, count as ``shared``.
"""

from __future__ import annotations

from collections.abc import Sequence

from homeserver.events.event import Event
from homeserver.storage import Store
from homeserver.visibility.rules import (
    INVITED,
    JOINED,
    effective_visibility,
    event_visible_to_server,
)
from homeserver.visibility.state_at import group_facts, memberships_of, state_groups_at


def _server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


def _needs_members(visibility: object) -> bool:
    # Under world_readable and shared a joined server sees every event, whoever was in.
    return effective_visibility(visibility) in (INVITED, JOINED)


async def hidden_from(
    store: Store, server_name: str, origin: str, events: Sequence[Event]
) -> set[str]:
    """IDs of ``events`` that ``origin`` (already known to be joined to the room) may not see
    in full. Worked out once per state group (:mod:`homeserver.visibility.state_at`), then one
    read of which of our senders are erased (none when no event has a local sender)."""
    groups = await state_groups_at(store, events, before=False)
    facts = await group_facts(
        store,
        groups.values(),
        lambda user_id: _server_of(user_id) == origin,
        members_needed=_needs_members,
    )
    erased = await store.admin_users.erased_among(
        {e.sender for e in events if _server_of(e.sender) == server_name}
    )
    hidden: set[str] = set()
    for event in events:
        group = groups.get(event.event_id)
        found = None if group is None else facts.get(group)
        if not event_visible_to_server(
            None if found is None else found.visibility,
            memberships_of(found),
            sender_erased=event.sender in erased,
        ):
            hidden.add(event.event_id)
    return hidden
