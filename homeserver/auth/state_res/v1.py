"""State resolution v1 (room version 1).

Known to reset state; kept for room v1 only. R starts as the union of the states without the
conflicted keys. Conflicted power levels are resolved first, then join rules, then members:
candidates sorted by ascending depth then descending sha1(event_id), the first taken, each next
one taken while it passes auth against R. Every other conflicted key takes the candidate with
the greatest depth (then smallest sha1) that passes auth against R.

Where the spec leaves things open this follows Synapse: the keys of one pass are all resolved
against R as it stood before that pass (so the result does not depend on key order), and a
normal key whose candidates all fail auth takes the candidate with the least depth.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from homeserver.auth.selection import auth_types_for_event
from homeserver.auth.state_res.common import StateMap, is_allowed, room_create_event, separate_v1
from homeserver.auth.state_res.loader import EventLoader
from homeserver.events.event import Event
from homeserver.events.state_keys import JOIN_RULES, MEMBER, POWER_LEVELS_KEY, StateKey
from homeserver.room_versions import RoomVersion


def _ascending(event: Event) -> tuple[int, int]:
    """Ascending depth, then descending sha1(event_id)."""
    digest = int(hashlib.sha1(event.event_id.encode("utf-8")).hexdigest(), 16)
    return (event.depth, -digest)


async def resolve_v1(
    room_version: RoomVersion, state_sets: Sequence[StateMap], loader: EventLoader
) -> dict[StateKey, str]:
    unconflicted, conflicted_ids = separate_v1(state_sets)
    if not conflicted_ids:
        return unconflicted

    await loader.load({i for ids in conflicted_ids.values() for i in ids})
    result: dict[StateKey, str] = dict(unconflicted)
    conflicted: dict[StateKey, list[Event]] = {}
    for key, ids in conflicted_ids.items():
        events = sorted(loader.known(ids), key=_ascending)
        if len(events) > 1:
            conflicted[key] = events
        elif events:
            result[key] = events[0].event_id  # the only candidate we know
    if not conflicted:
        return result

    # Everything an auth check can consult: R's events for the candidates' auth types.
    wanted: set[str] = set()
    for events in conflicted.values():
        for event in events:
            for auth_key in auth_types_for_event(
                room_version, event.type, event.sender, event.state_key, event.content
            ):
                if auth_key in result:
                    wanted.add(result[auth_key])
    await loader.load(wanted)
    room_create = await room_create_event(room_version, loader, state_sets)

    def allowed(event: Event, state: StateMap) -> bool:
        return is_allowed(
            room_version, event, state, loader, room_create, fall_back_to_own_auth_events=False
        )

    def resolve_auth_key(key: StateKey, events: list[Event], base: StateMap) -> str:
        state = dict(base)
        chosen = events[0]
        state[key] = chosen.event_id
        for event in events[1:]:
            if not allowed(event, state):
                break
            chosen = event
            state[key] = chosen.event_id
        return chosen.event_id

    passes = (
        [POWER_LEVELS_KEY] if POWER_LEVELS_KEY in conflicted else [],
        sorted(k for k in conflicted if k[0] == JOIN_RULES),
        sorted(k for k in conflicted if k[0] == MEMBER),
    )
    for keys in passes:
        base = dict(result)
        for key in keys:
            result[key] = resolve_auth_key(key, conflicted.pop(key), base)

    base = dict(result)
    for key in sorted(conflicted):
        events = conflicted[key]
        chosen = events[0]  # the least depth, if every candidate fails
        for event in reversed(events):
            if allowed(event, base):
                chosen = event
                break
        result[key] = chosen.event_id
    return result
