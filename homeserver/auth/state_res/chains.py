"""Auth chains, the auth difference and the conflicted state subgraph (state res v2 / v2.1).

All functions work on events already in an :class:`EventLoader` (load the auth closure first);
events that could not be loaded are left out of every result.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from homeserver.auth.state_res.loader import EventLoader
from homeserver.events.state_keys import StateKey


def auth_chain(loader: EventLoader, roots: Iterable[str]) -> set[str]:
    """The loaded events reachable from ``roots`` through ``auth_events``, roots included.

    The spec's auth chain of one event excludes the event itself; the *full* auth chain of a
    state set here includes the set's own events, as Synapse computes it. Events of every
    state set are in the conflicted set or in every state set, so this only keeps unconflicted
    events out of the auth difference, where replaying them changed nothing.
    """
    seen: set[str] = set()
    stack = [r for r in roots if loader.get(r) is not None]
    while stack:
        event_id = stack.pop()
        if event_id in seen:
            continue
        seen.add(event_id)
        event = loader.get(event_id)
        if event is None:
            continue
        stack.extend(a for a in event.auth_event_ids() if a not in seen and loader.get(a))
    return seen


def auth_difference(loader: EventLoader, state_sets: Sequence[Mapping[StateKey, str]]) -> set[str]:
    """∪ Cᵢ − ∩ Cᵢ over the full auth chains Cᵢ of the state sets."""
    chains = [auth_chain(loader, state.values()) for state in state_sets]
    if not chains:
        return set()
    union = set().union(*chains)
    intersection = set(chains[0]).intersection(*chains[1:])
    return union - intersection


def conflicted_state_subgraph(loader: EventLoader, conflicted: Collection[str]) -> set[str]:
    """Every event on an ``auth_events`` path between two conflicted events, endpoints included.

    An event is on such a path iff it is reachable from a conflicted event (it is in the
    inclusive auth chain of the conflicted set) and a conflicted event is reachable from it.
    """
    conflicted_set = {c for c in conflicted if loader.get(c) is not None}
    ancestors = auth_chain(loader, conflicted_set)
    reaches: dict[str, bool] = {}
    visiting: set[str] = set()
    for start in ancestors:
        if start in reaches:
            continue
        # Iterative post-order DFS: a node is decided once all its auth events are.
        stack: list[tuple[str, bool]] = [(start, False)]
        while stack:
            event_id, children_done = stack.pop()
            event = loader.get(event_id)
            assert event is not None  # ancestors holds loaded events only
            if children_done:
                visiting.discard(event_id)
                reaches[event_id] = event_id in conflicted_set or any(
                    reaches.get(a, False) for a in event.auth_event_ids()
                )
                continue
            if event_id in reaches or event_id in visiting:
                continue  # decided, or a cycle in a malformed graph
            visiting.add(event_id)
            stack.append((event_id, True))
            stack.extend(
                (a, False)
                for a in event.auth_event_ids()
                if a in ancestors and a not in reaches and a not in visiting
            )
    return {event_id for event_id, ok in reaches.items() if ok}
