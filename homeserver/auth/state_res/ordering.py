"""The two orderings of state resolution v2: reverse topological power ordering and mainline
ordering. Both read only events already loaded into the :class:`EventLoader`.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Collection

from homeserver.auth.state_res.common import POWER_LEVELS, power_rank, sender_power_level
from homeserver.auth.state_res.loader import EventLoader
from homeserver.events.event import Event
from homeserver.room_versions import RoomVersion

_NONE: frozenset[str] = frozenset()


def _nearest_members(loader: EventLoader, members: set[str]) -> dict[str, set[str]]:
    """For each member, the members it reaches through ``auth_events`` without passing another.

    These are the edges of the auth DAG restricted to ``members``: paths through events
    outside the set still order its members. Non-members are walked once each (memoised).
    """
    below: dict[str, frozenset[str]] = {}  # non-member -> nearest members under it

    def reach(event_id: str) -> frozenset[str]:
        return frozenset((event_id,)) if event_id in members else below.get(event_id, _NONE)

    def expand(roots: list[str]) -> None:
        stack: list[tuple[str, bool]] = [(r, False) for r in roots]
        visiting: set[str] = set()
        while stack:
            event_id, children_done = stack.pop()
            event = loader.get(event_id)
            if event is None:
                continue
            if children_done:
                visiting.discard(event_id)
                found: set[str] = set()
                for auth_id in event.auth_event_ids():
                    found.update(reach(auth_id))
                below[event_id] = frozenset(found) if found else _NONE
                continue
            if event_id in below or event_id in visiting:
                continue
            visiting.add(event_id)
            stack.append((event_id, True))
            stack.extend(
                (a, False)
                for a in event.auth_event_ids()
                if a not in members and a not in below and a not in visiting
            )

    edges: dict[str, set[str]] = {}
    for member in members:
        event = loader.get(member)
        if event is None:
            edges[member] = set()
            continue
        auth_ids = [a for a in event.auth_event_ids() if a not in members]
        expand(auth_ids)
        found: set[str] = set()
        for auth_id in event.auth_event_ids():
            found.update(reach(auth_id))
        found.discard(member)
        edges[member] = found
    return edges


def reverse_topological_power_order(
    room_version: RoomVersion,
    event_ids: Collection[str],
    loader: EventLoader,
    room_create: Event | None,
) -> list[str]:
    """Kahn's algorithm over the auth DAG, earliest first; among the events whose auth events
    have all been emitted, the one whose sender has the greatest power level (per its own auth
    events) goes first, then the smallest ``origin_server_ts``, then the smallest event ID.

    Unknown events are skipped; events on a cycle (impossible in a well-formed room) are left
    out.
    """
    members = {e for e in event_ids if loader.get(e) is not None}
    edges = _nearest_members(loader, members)
    waiting = {member: len(deps) for member, deps in edges.items()}
    dependents: dict[str, list[str]] = {member: [] for member in members}
    for member, deps in edges.items():
        for dep in deps:
            dependents[dep].append(member)

    def key(event_id: str) -> tuple[tuple[int, float], int, str]:
        event = loader.get(event_id)
        assert event is not None
        level = sender_power_level(room_version, event, loader, room_create)
        return (power_rank(level), event.origin_server_ts, event_id)

    ready = [(key(m), m) for m, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    ordered: list[str] = []
    while ready:
        _, event_id = heapq.heappop(ready)
        ordered.append(event_id)
        for dependent in dependents[event_id]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, (key(dependent), dependent))
    return ordered


def mainline_order(
    event_ids: Collection[str], power_levels_id: str | None, loader: EventLoader
) -> list[str]:
    """Sort by mainline position based on ``power_levels_id`` (greater position first, no
    mainline PL event = infinity), then ``origin_server_ts``, then event ID.
    """
    mainline: dict[str, int] = {}
    current = loader.get(power_levels_id) if power_levels_id is not None else None
    while current is not None and current.event_id not in mainline:
        mainline[current.event_id] = len(mainline)
        current = loader.auth_event_of_type(current, POWER_LEVELS)

    positions: dict[str, float] = {}  # PL event -> mainline position, filled while walking

    def position(event: Event) -> float:
        walked: list[str] = []
        current = loader.auth_event_of_type(event, POWER_LEVELS)
        result: float = math.inf
        while current is not None:
            known = mainline.get(current.event_id)
            if known is None:
                known_pos = positions.get(current.event_id)
                if known_pos is not None:
                    result = known_pos
                    break
            else:
                result = known
                break
            if current.event_id in walked:
                break  # a cycle in a malformed graph
            walked.append(current.event_id)
            current = loader.auth_event_of_type(current, POWER_LEVELS)
        for pl_id in walked:
            positions[pl_id] = result
        return result

    keyed: list[tuple[float, int, str]] = []
    for event in loader.known(event_ids):
        keyed.append((-position(event), event.origin_server_ts, event.event_id))
    keyed.sort()
    return [event_id for _, _, event_id in keyed]
