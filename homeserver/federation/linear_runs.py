"""The fast path for live PDUs that simply extend a room: one transaction for a whole run.

Most of what a peer sends is a chain: each PDU's only prev event is the one before it, and the
first one's is the room's only forward extremity. The state before each such PDU is then the
room's current state as the run left it, known in memory, and so is the auth check against the
current state (it is the same check). A run of PDUs that pass their auth rules is stored in one
database transaction, as a local batch is, instead of one transaction per PDU.

Anything else — a PDU with several prevs or a gap, a repeat, one failing the auth rules, one
whose auth events we lack — ends the run: the run is stored first, then that PDU goes through
the general pipeline of :mod:`received` (gap filling, state resolution, rejection, soft-fail),
which sees the run in the database. If the room moved under the run before it could be stored
(a local event built on the same extremity), the run is not stored as such: each of its PDUs goes
through the general pipeline instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from homeserver.auth.rules import AuthError, check_auth_rules, check_event_auth
from homeserver.auth.selection import auth_types_for_event
from homeserver.events.event import Event
from homeserver.events.state_keys import CREATE_KEY, StateKey
from homeserver.federation.pdu_checks import PduRejected
from homeserver.room_versions import RoomVersion
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.storage.state import StateMap

logger = logging.getLogger(__name__)

#: Answer per event ID: None when accepted, else the reason it was dropped or rejected.
Outcomes = dict[str, str | None]


class _RoomMoved(Exception):
    """The room's extremities changed between planning a run and storing it."""


@dataclass(slots=True)
class _Run:
    #: the group of the state before the first event (the state after its prev event).
    base_group: int | None = None
    #: the single prev event of the first event: the room's only extremity when planned.
    root: str | None = None
    events: list[Event] = field(default_factory=list)
    by_id: dict[str, Event] = field(default_factory=dict)
    #: the state after the last event of the run.
    state: StateMap = field(default_factory=dict)

    def add(self, event: Event) -> None:
        self.events.append(event)
        self.by_id[event.event_id] = event
        if event.is_state():
            self.state[event.state_tuple] = event.event_id

    def clear(self) -> None:
        self.base_group, self.root = None, None
        self.events, self.by_id, self.state = [], {}, {}


class LinearRuns:
    """Receives the live PDUs of one room, in order, through runs where it can."""

    def __init__(
        self,
        store: Store,
        *,
        room_version_of: Callable[[str], Awaitable[RoomVersion]],
        process: Callable[[str, Event], Awaitable[None]],
        after_stored: Callable[[Sequence[Event]], Awaitable[None]],
    ) -> None:
        self.store = store
        #: the version of a room we know (raises ``UnknownRoom`` otherwise).
        self.room_version_of = room_version_of
        #: the general pipeline for one PDU (raises ``PduRejected``); the room's lock is held.
        self.process = process
        #: what follows a stored run of accepted events (waking /sync, tombstones).
        self.after_stored = after_stored

    async def receive(self, origin: str, events: Sequence[Event]) -> Outcomes:
        """Every event of ``events`` (one room, checked by ``check_pdu``) handled in order.
        The caller holds the room's lock."""
        outcomes: Outcomes = {}
        if not events:
            return outcomes
        room_id = events[0].room_id
        room_version = await self.room_version_of(room_id)
        present = await self.store.events.get_event_ids_present(e.event_id for e in events)
        run = _Run()
        for event in events:
            if (
                event.event_id not in present
                and event.event_id not in run.by_id
                and await self._extends(room_version, run, event)
            ):
                run.add(event)
                continue
            await self._store_run(origin, run, outcomes)
            outcomes[event.event_id] = await self._general(origin, event)
        await self._store_run(origin, run, outcomes)
        return outcomes

    async def _general(self, origin: str, event: Event) -> str | None:
        try:
            await self.process(origin, event)
        except PduRejected as e:
            return e.reason
        return None

    # --- planning ------------------------------------------------------------------------------
    async def _extends(self, room_version: RoomVersion, run: _Run, event: Event) -> bool:
        """Whether ``event`` continues ``run`` (and then its auth checks passed)."""
        if event.rejected or room_version.identifier != event.room_version.identifier:
            return False
        prevs = event.prev_event_ids()
        if len(prevs) != 1:
            return False
        (prev,) = prevs
        if run.events:
            if prev != run.events[-1].event_id:
                return False
            return await self._authorised(room_version, run, event, run.state)
        extremities = await self.store.events.get_forward_extremities(event.room_id)
        if extremities.event_ids != [prev]:
            return False
        groups = await self.store.state.get_state_group_for_events([prev])
        if prev not in groups:
            return False
        state_before = dict(await self.store.state.get_state_group_ids(groups[prev]))
        if not await self._authorised(room_version, run, event, state_before):
            return False
        run.base_group, run.root, run.state = groups[prev], prev, state_before
        return True

    async def _authorised(
        self, room_version: RoomVersion, run: _Run, event: Event, state_before: StateMap
    ) -> bool:
        """The auth rules against the event's own auth events and against the state before it
        (which, for a run, is also the current state). False sends the event down the general
        pipeline, which rejects it properly (or fetches the auth events we lack)."""
        auth_ids = event.auth_event_ids()
        keys: list[StateKey] = [
            CREATE_KEY,
            *auth_types_for_event(
                room_version, event.type, event.sender, event.state_key, event.content
            ),
        ]
        state_ids = {state_before[k] for k in keys if k in state_before}
        loaded = await self._events(run.by_id, {*auth_ids, *state_ids})
        if any(a not in loaded for a in auth_ids) or any(s not in loaded for s in state_ids):
            return False
        auth_events = [loaded[a] for a in auth_ids]
        create_id = state_before.get(CREATE_KEY)
        create = loaded.get(create_id) if create_id else None
        try:
            check_event_auth(room_version, event, auth_events, create)
            check_auth_rules(
                room_version, event, {loaded[i].state_tuple: loaded[i] for i in state_ids}
            )
        except AuthError:
            return False
        return True

    async def _events(
        self, pending: Mapping[str, Event], event_ids: Collection[str]
    ) -> dict[str, Event]:
        found = {i: pending[i] for i in event_ids if i in pending}
        wanted = [i for i in event_ids if i not in found]
        if wanted:
            found.update(await self.store.events.get_events(wanted))
        return found

    # --- storing -------------------------------------------------------------------------------
    async def _store_run(self, origin: str, run: _Run, outcomes: Outcomes) -> None:
        if not run.events:
            return
        events, base_group, root = list(run.events), run.base_group, run.root
        run.clear()
        room_id = events[0].room_id
        try:
            await self.store.db.run_in_transaction(
                "receive_pdu_run", self._persist_txn, events, base_group, root
            )
        except _RoomMoved:
            logger.info("room %s moved under a run of %d PDUs; one by one", room_id, len(events))
            for event in events:
                outcomes[event.event_id] = await self._general(origin, event)
            return
        for event in events:
            outcomes[event.event_id] = None
        await self.after_stored(events)

    async def _persist_txn(
        self, txn: Transaction, events: list[Event], base_group: int | None, root: str | None
    ) -> None:
        room_id = events[0].room_id
        await self.store.persister.lock_rooms_txn(txn, [room_id])
        extremities = await self.store.events.get_forward_extremities(room_id, txn=txn)
        if extremities.event_ids != [root]:
            raise _RoomMoved(room_id)
        specs: list[tuple[Event, int | None]] = [(events[0], base_group)]
        specs.extend((event, None) for event in events[1:])
        await self.store.persist_events_txn(txn, specs)
