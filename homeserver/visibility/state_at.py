"""What history visibility reads of the state at each event of a batch, for both audiences
(clients in :mod:`homeserver.visibility.client`, servers in :mod:`homeserver.visibility.server`).

Visibility depends on the state at an event only through its ``m.room.history_visibility`` and
a few memberships, so a batch is read per state group, never per event:

1. :func:`state_groups_at` — each event's state group: the state *before* it for clients (from
   the runs where a room's group changes, one query per room, LRU-cached per event), the state
   *after* it for servers (Synapse judges a server by the state after the event, so its own
   join or invite shows);
2. :func:`group_facts` — for each distinct group (the state store caches groups), its history
   visibility and the memberships of the users the caller asks about, the events behind them
   fetched in one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

from homeserver.events.event import Event
from homeserver.events.state_keys import HISTORY_VISIBILITY_KEY
from homeserver.storage import Store


@dataclass(frozen=True, slots=True)
class GroupFacts:
    #: the ``history_visibility`` content value in the group (None: no such event).
    visibility: object = None
    #: ``user_id → membership`` of the users asked about who have a member event there.
    memberships: dict[str, str | None] = field(default_factory=dict)


async def state_groups_at(store: Store, events: Sequence[Event], *, before: bool) -> dict[str, int]:
    """``event_id → state group`` before (or after) each event; events with no state here
    (outliers) are left out."""
    if not before:
        return await store.state.get_state_group_for_events(e.event_id for e in events)
    by_room: dict[str, list[tuple[str, int]]] = {}
    for event in events:
        position = event.internal.stream_ordering
        if not event.internal.outlier and position is not None:
            by_room.setdefault(event.room_id, []).append((event.event_id, position))
    groups: dict[str, int] = {}
    for room_id, placed in by_room.items():
        groups.update(await state_groups_before(store, room_id, placed))
    return groups


async def state_groups_before(
    store: Store, room_id: str, placed: Sequence[tuple[str, int]]
) -> dict[str, int]:
    """``event_id → state group`` before each event of ``room_id`` given as ``(event_id,
    stream position)``: :func:`state_groups_at` for a caller that already has the positions
    of one room's events (no second pass over the events)."""
    return await store.visibility.get_state_groups_before(room_id, placed)


async def group_facts(
    store: Store,
    groups: Iterable[int],
    members: Callable[[str], bool],
    *,
    members_needed: Callable[[object], bool] = lambda _visibility: True,
) -> dict[int, GroupFacts]:
    """The visibility of each group and the memberships of the users ``members`` accepts (by
    user ID), read only in the groups whose visibility ``members_needed`` says needs them."""
    states = await store.state.get_state_groups_ids(set(groups))
    found = await store.events.get_events(
        {s[HISTORY_VISIBILITY_KEY] for s in states.values() if HISTORY_VISIBILITY_KEY in s}
    )
    visibility: dict[int, object] = {}
    for group, state in states.items():
        event = found.get(state.get(HISTORY_VISIBILITY_KEY, ""))
        visibility[group] = None if event is None else event.content.get("history_visibility")
    member_ids: dict[int, dict[str, str]] = {
        group: {
            state_key: event_id
            for (event_type, state_key), event_id in state.items()
            if event_type == "m.room.member" and members(state_key)
        }
        for group, state in states.items()
        if members_needed(visibility[group])
    }
    member_events = await store.events.get_events(
        {i for ids in member_ids.values() for i in ids.values()}
    )
    return {
        group: GroupFacts(
            visibility[group],
            {
                user: member_events[i].membership
                for user, i in member_ids.get(group, {}).items()
                if i in member_events
            },
        )
        for group in states
    }


def memberships_of(facts: GroupFacts | None) -> Collection[str | None]:
    return () if facts is None else tuple(facts.memberships.values())
