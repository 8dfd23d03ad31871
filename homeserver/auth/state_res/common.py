"""Pieces shared by state resolution v1 and v2: splitting the state sets, power events, the
room's create event, a sender's power level, and checking one event against a state map.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from homeserver.auth.power_levels import user_power_level
from homeserver.auth.rules import AuthError, check_auth_rules
from homeserver.auth.selection import auth_types_for_event
from homeserver.auth.state_res.loader import EventLoader
from homeserver.events.event import Event
from homeserver.events.state_keys import (
    CREATE,
    CREATE_KEY,
    JOIN_RULES,
    MEMBER,
    POWER_LEVELS,
    StateKey,
)
from homeserver.room_versions import RoomVersion

StateMap = Mapping[StateKey, str]


def separate_v1(
    state_sets: Sequence[StateMap],
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """v1: a key is conflicted when the states that have it disagree on its event."""
    values: dict[StateKey, set[str]] = {}
    for state in state_sets:
        for key, event_id in state.items():
            values.setdefault(key, set()).add(event_id)
    unconflicted = {k: next(iter(v)) for k, v in values.items() if len(v) == 1}
    conflicted = {k: v for k, v in values.items() if len(v) > 1}
    return unconflicted, conflicted


def separate_v2(
    state_sets: Sequence[StateMap],
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """v2: a key is unconflicted only when *every* state has it with the same event."""
    keys: set[StateKey] = set()
    for state in state_sets:
        keys.update(state)
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    for key in keys:
        values = {state.get(key) for state in state_sets}
        if len(values) == 1 and None not in values:
            unconflicted[key] = next(iter(values))  # type: ignore[assignment]
        else:
            conflicted[key] = {v for v in values if v is not None}
    return unconflicted, conflicted


def is_power_event(event: Event) -> bool:
    """PL and join-rules events, kicks and bans (and the create event, as Synapse counts it)."""
    if not event.is_state():
        return False
    if event.state_key == "" and event.type in (POWER_LEVELS, JOIN_RULES, CREATE):
        return True
    return (
        event.type == MEMBER
        and event.membership in ("leave", "ban")
        and event.sender != event.state_key
    )


async def room_create_event(
    room_version: RoomVersion, loader: EventLoader, state_sets: Sequence[StateMap]
) -> Event | None:
    """The room's create event: in v12 the one whose ID the room ID is; else the state's."""
    if room_version.room_id_is_create_event_hash:
        for state in state_sets:
            sample = next(iter(loader.known(state.values())), None)
            if sample is not None and isinstance(sample.room_id, str):
                create_id = "$" + sample.room_id[1:]
                await loader.load([create_id])
                create = loader.get(create_id)
                if create is not None and create.type == CREATE:
                    return create
    candidates = sorted({s[CREATE_KEY] for s in state_sets if CREATE_KEY in s})
    await loader.load(candidates)
    for create in loader.known(candidates):
        if create.type == CREATE:
            return create
    return None


def sender_power_level(
    room_version: RoomVersion, event: Event, loader: EventLoader, room_create: Event | None
) -> object:
    """The sender's power level according to the event's own auth events.

    The create event comes from the auth events (v1-v11) or is the room's (v12, where it is
    never an auth event). Without any create event the level is 0.
    """
    if event.type == CREATE and event.state_key == "":
        create: Event | None = event
    else:
        create = loader.auth_event_of_type(event, CREATE) or room_create
    if create is None:
        return 0
    power_levels = loader.auth_event_of_type(event, POWER_LEVELS)
    return user_power_level(room_version, event.sender, create, power_levels)


def power_rank(level: object) -> tuple[int, float]:
    """A sort key putting higher power first; a non-finite level (v12 creator) before all."""
    if isinstance(level, int | float) and not isinstance(level, bool) and math.isfinite(level):
        return (1, -level)
    return (0, 0)


def own_auth_events(event: Event, loader: EventLoader) -> dict[StateKey, Event]:
    """The event's own auth events that were not rejected, by state key."""
    own: dict[StateKey, Event] = {}
    for auth_event in loader.auth_events_of(event):
        if not auth_event.rejected and auth_event.is_state():
            own.setdefault(auth_event.state_tuple, auth_event)
    return own


def is_allowed(
    room_version: RoomVersion,
    event: Event,
    state: StateMap,
    loader: EventLoader,
    room_create: Event | None,
    *,
    fall_back_to_own_auth_events: bool,
) -> bool:
    """Does ``event`` pass the auth rules against ``state``?

    For each auth type of the event the state's event is used; where the state has none (or
    it is rejected or unknown) and ``fall_back_to_own_auth_events`` is set, the event's own
    auth event of that type is used instead. Rejected events are never used as auth events.
    """
    own = own_auth_events(event, loader) if fall_back_to_own_auth_events else {}
    auth: dict[StateKey, Event] = {}
    keys: Iterable[StateKey] = auth_types_for_event(
        room_version, event.type, event.sender, event.state_key, event.content
    )
    for key in keys:
        chosen: Event | None = None
        state_event_id = state.get(key)
        if state_event_id is not None:
            candidate = loader.get(state_event_id)
            if candidate is not None and not candidate.rejected:
                chosen = candidate
        if chosen is None:
            chosen = own.get(key)
        if chosen is not None:
            auth[key] = chosen
    if not room_version.create_event_in_auth_events and room_create is not None:
        auth.setdefault(CREATE_KEY, room_create)
    try:
        check_auth_rules(room_version, event, auth)
    except AuthError:
        return False
    return True
