"""Building an event the auth rules allow: choose its auth events from the room's state, assemble
it (``events/builder.py``, pure), and check it against the auth rules before anyone stores it.

Used by the room services (``rooms/sender.py``) and by the resident side of federated joins
(``federation/joins.py``); the callers read state and extremities from storage and persist the
result, so nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from homeserver.auth.rules import check_auth_rules
from homeserver.auth.selection import auth_types_for_event
from homeserver.events.builder import Signer, assemble_event, choose_prev_events
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.events.signing import DeferredSignatures
from homeserver.events.state_keys import CREATE_KEY
from homeserver.room_versions import RoomVersion

StateKey = tuple[str, str]


def select_auth_events(
    room_version: RoomVersion, draft: EventDraft, state: Mapping[StateKey, Event]
) -> list[Event]:
    wanted = auth_types_for_event(
        room_version, draft.type, draft.sender, draft.state_key, draft.content
    )
    chosen: list[Event] = []
    for key in wanted:
        event = state.get(key)
        if event is not None and event not in chosen:
            chosen.append(event)
    return chosen


def build_event(
    room_version: RoomVersion,
    signer: Signer,
    draft: EventDraft,
    *,
    room_id: str | None,
    state: Mapping[StateKey, Event],
    prev_events: Sequence[Event],
    origin_server_ts: int,
    deferred: DeferredSignatures | None = None,
) -> Event:
    """Build, hash, sign and authorise one event (its signature left to ``deferred`` if
    given).

    ``state`` is the room's state before the event (empty for a create event); ``room_id`` is
    None only for a v12 create event, whose ID names the room. Raises
    :class:`~homeserver.events.validation.EventValidationError` for a malformed event and
    :class:`~homeserver.auth.rules.AuthError` for one the auth rules refuse.
    """
    auth = select_auth_events(room_version, draft, state)
    event = assemble_event(
        room_version,
        signer,
        draft,
        room_id=room_id,
        prev_events=choose_prev_events(prev_events),
        auth_events=auth,
        origin_server_ts=origin_server_ts,
        deferred=deferred,
    )
    auth_map = {e.state_tuple: e for e in auth}
    # v12 never cites the create event in auth_events, but its rules still read it.
    create = state.get(CREATE_KEY)
    if create is not None:
        auth_map[CREATE_KEY] = create
    check_auth_rules(room_version, event, auth_map)
    return event
