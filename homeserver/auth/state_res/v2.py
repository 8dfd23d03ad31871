"""State resolution v2 (room versions 2-11) and v2.1 (room version 12, MSC4297).

1. X = the power events of the full conflicted set, plus the events of their auth chains that
   are in the full conflicted set, in reverse topological power ordering.
2. Iterative auth checks of X, starting from the unconflicted map (v2) or an empty map (v2.1).
3. The remaining events of the full conflicted set in mainline ordering, based on the PL
   event of the partial state.
4. Iterative auth checks of those, on top of the partial state.
5. The unconflicted map re-applied on top.

The full conflicted set is the conflicted set plus the auth difference, and in v2.1 also the
conflicted state subgraph. Events that could not be fetched are left out of every step.

Rejected events: an event rejected earlier still takes part in the checks like any other (the
spec: only auth-chain failures may not appear, and those never reach state); a rejected event
is never *used as an auth event*, whether it comes from the partial state or the event's own
``auth_events``. (Synapse keeps previously rejected events out of the result; the spec does not.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from homeserver.auth.state_res.chains import (
    auth_chain,
    auth_difference,
    conflicted_state_subgraph,
)
from homeserver.auth.state_res.common import (
    StateMap,
    is_allowed,
    is_power_event,
    room_create_event,
    separate_v2,
)
from homeserver.auth.state_res.loader import EventLoader
from homeserver.auth.state_res.ordering import mainline_order, reverse_topological_power_order
from homeserver.events.event import Event
from homeserver.events.state_keys import POWER_LEVELS_KEY, StateKey
from homeserver.room_versions import RoomVersion


def iterative_auth_checks(
    room_version: RoomVersion,
    ordered: Iterable[str],
    state: dict[StateKey, str],
    loader: EventLoader,
    room_create: Event | None,
) -> dict[StateKey, str]:
    """Apply each state event of ``ordered`` to ``state`` (in place) if it passes auth."""
    for event_id in ordered:
        event = loader.get(event_id)
        if event is None or not event.is_state():
            continue
        if is_allowed(
            room_version, event, state, loader, room_create, fall_back_to_own_auth_events=True
        ):
            state[event.state_tuple] = event_id
    return state


async def resolve_v2(
    room_version: RoomVersion,
    state_sets: Sequence[StateMap],
    loader: EventLoader,
    *,
    v2_1: bool,
) -> dict[StateKey, str]:
    unconflicted, conflicted_by_key = separate_v2(state_sets)
    if not conflicted_by_key:
        return unconflicted

    # Every event of every state set and its whole auth chain, one fetch per BFS level.
    await loader.load_auth_closure({i for state in state_sets for i in state.values()})
    room_create = await room_create_event(room_version, loader, state_sets)

    conflicted = {i for ids in conflicted_by_key.values() for i in ids}
    full_conflicted = conflicted | auth_difference(loader, state_sets)
    if v2_1:
        full_conflicted |= conflicted_state_subgraph(loader, conflicted)
    full_conflicted = {i for i in full_conflicted if loader.get(i) is not None}

    power_events = {
        event.event_id for event in loader.known(full_conflicted) if is_power_event(event)
    }
    # The union of the power events' auth chains is the auth chain of the set (roots included).
    selected = auth_chain(loader, power_events) & full_conflicted
    power_ordered = reverse_topological_power_order(room_version, selected, loader, room_create)

    partial: dict[StateKey, str] = {} if v2_1 else dict(unconflicted)
    iterative_auth_checks(room_version, power_ordered, partial, loader, room_create)

    remaining = full_conflicted - selected
    others_ordered = mainline_order(remaining, partial.get(POWER_LEVELS_KEY), loader)
    iterative_auth_checks(room_version, others_ordered, partial, loader, room_create)

    partial.update(unconflicted)
    return partial
