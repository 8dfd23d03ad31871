"""Receiving PDUs over federation: the checks on receipt, gap filling, state at forks, and
persistence (spec: server-server API "Checks performed on receipt of a PDU"; §8 of
federation-minimum.md).

For a live PDU (:meth:`ReceivedEvents.on_receive_pdu`), after the format, signature and
content-hash checks of :mod:`pdu_checks`:

1. missing prev events are asked of the origin with ``get_missing_events`` and processed oldest
   first; for prevs still missing, the state at each is fetched from the origin and its events
   stored as outliers;
2. the state before the event is the state after its prev (one prev), or the resolution of the
   states after its prevs;
3. the auth rules run against the event's own auth events (missing ones are fetched with
   ``event_auth``) and then against the state before it — failing either, the event is stored
   rejected; then against the room's current state — failing that, it is stored *soft-failed*;
4. the event is persisted; if the room's forward extremities then fork, the current state is the
   resolution of the states at all of them. Local /sync waiters are woken after commit.

PDUs of one room are processed one at a time, across processes too
(:meth:`ReceivedEvents.room_lock`: an in-process lock, then the room's session-level advisory
lock on PostgreSQL), so prev events, extremities and current state are read and written in
order and no two processes fetch and store the same gap at once. The lock is held across network
fetches, so it is not a transaction lock (see ``SessionLocks`` in storage/engine_postgres.py);
the persisting transaction itself still locks the room's row and checks that the extremities it
resolved against did not move.

This module is the pipeline; its jobs live beside it: :mod:`auth_chains` (outliers, auth chains,
the auth rules against a state), :mod:`received_state` (the state before and after an event,
forks), :mod:`joined_room` (a room we joined through another server) and :mod:`linear_runs`
(runs of PDUs that simply extend the room, one transaction each).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from homeserver.auth.rules import AuthError, check_event_auth
from homeserver.clock import WallClock
from homeserver.events.event import Event
from homeserver.events.state_keys import CREATE_KEY, TOMBSTONE_KEY
from homeserver.federation.auth_chains import AuthChains, create_event_for
from homeserver.federation.client import FederationError
from homeserver.federation.joined_room import JoinedRoomPersister
from homeserver.federation.linear_runs import LinearRuns
from homeserver.federation.pdu_checks import (
    EventRejected,
    EventVerifier,
    PduRejected,
    UnknownRoom,
    check_pdu,
)
from homeserver.federation.received_state import ReceivedState
from homeserver.federation.remote_fetch import FederationRequester, RemoteEventFetcher
from homeserver.room_versions import RoomVersion, get_room_version
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.storage.persist import StateBefore
from homeserver.storage.state import StateMap, diff_states
from homeserver.streams.notifier import Notifier

logger = logging.getLogger(__name__)

TombstoneHook = Callable[[str, Event], Awaitable[None]]
#: how many times storing a received event re-resolves the current state because local events
#: kept landing meanwhile, before giving up on it.
PERSIST_ATTEMPTS = 5


class _ExtremitiesMoved(Exception):
    """The room's forward extremities changed between resolving the current state and storing."""


#: How long a received PDU waits for its room's lock held by another process (then 503: the
#: origin retries the transaction).
ROOM_LOCK_TIMEOUT_SECONDS = 60.0

#: rooms whose version is kept in memory before that cache starts over.
ROOM_VERSION_CACHE_SIZE = 100_000


class ReceivedEvents:
    """``hs.received_events``: everything that happens to a PDU another server sends us."""

    def __init__(
        self,
        *,
        store: Store,
        keyring: EventVerifier,
        client: FederationRequester,
        notifier: Notifier,
        clock: WallClock,
        tombstone_hook: TombstoneHook | None = None,
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.fetcher = RemoteEventFetcher(client, keyring)
        self.notifier = notifier
        self.clock = clock
        #: called after a live m.room.tombstone became the room's current tombstone (the
        #: wiring passes the step moving our copy of the room to ``tombstoned``).
        self.tombstone_hook = tombstone_hook
        self._room_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        #: room versions never change: kept so each PDU does not re-read its room's row.
        self._room_versions: dict[str, RoomVersion] = {}
        self.auth_chains = AuthChains(store, self.fetcher)
        self.states = ReceivedState(store, self.fetcher, self.auth_chains)
        self.joined_rooms = JoinedRoomPersister(
            store=store,
            keyring=keyring,
            auth_chains=self.auth_chains,
            notifier=notifier,
            clock=clock,
            room_lock=self.room_lock,
        )
        self.runs = LinearRuns(
            store,
            room_version_of=self.room_version_of,
            process=self.process,
            after_stored=self.after_run_stored,
        )

    @asynccontextmanager
    async def room_lock(self, room_id: str) -> AsyncIterator[None]:
        """Hold the lock serialising received events of one room, among this process's tasks
        (first: waiting here costs no database round trip) and then among processes."""
        lock = self._room_locks.get(room_id)
        if lock is None:
            lock = asyncio.Lock()
            self._room_locks[room_id] = lock
        db = self.store.db
        key = db.lock_key("received_room", room_id)
        async with lock, db.session_lock(key, timeout=ROOM_LOCK_TIMEOUT_SECONDS):
            yield

    async def room_version_of(self, room_id: str) -> RoomVersion:
        """The version of a room we know; :class:`UnknownRoom` otherwise."""
        version = self._room_versions.get(room_id)
        if version is not None:
            return version
        room = await self.store.rooms.get_room(room_id)
        if room is None:
            raise UnknownRoom(f"unknown room {room_id}")
        version = get_room_version(room.room_version)
        if len(self._room_versions) >= ROOM_VERSION_CACHE_SIZE:
            self._room_versions.clear()
        self._room_versions[room_id] = version
        return version

    # --- contract entry points ---------------------------------------------------------------
    async def check_pdu(
        self,
        room_version: RoomVersion,
        pdu: dict[str, Any],
        *,
        origin: str,
        check_authorising_server: bool = True,
    ) -> Event:
        """Format, signatures (dropped: a :class:`PduRejected`), content hash (a redacted copy
        with ``internal.redacted`` on a mismatch)."""
        return await check_pdu(
            room_version, pdu, self.keyring, check_authorising_server=check_authorising_server
        )

    async def on_receive_pdu(self, origin: str, event: Event) -> None:
        """The whole pipeline for a live PDU (already through :meth:`check_pdu`). Raises
        :class:`PduRejected` if it was dropped or stored rejected."""
        async with self.room_lock(event.room_id):
            await self.process(origin, event)

    async def on_receive_pdus(self, origin: str, events: Sequence[Event]) -> dict[str, str | None]:
        """Live PDUs of one room (each through :meth:`check_pdu`), in order: the answer per
        event ID (None: accepted). Runs that simply extend the room are stored one run per
        transaction (:mod:`linear_runs`); the rest go through the general pipeline."""
        if not events:
            return {}
        async with self.room_lock(events[0].room_id):
            return await self.runs.receive(origin, events)

    async def process(self, origin: str, event: Event) -> None:
        """The general pipeline for one live PDU; the caller holds the room's lock."""
        await self._process(origin, event, fill_gaps=True)

    async def after_accepted(self, event: Event) -> None:
        """What follows an accepted live event once stored: a tombstone that became the room's
        current one moves our copy of the room to ``tombstoned``."""
        room_id = event.room_id
        if (
            self.tombstone_hook is not None
            and event.is_state()
            and event.state_tuple == TOMBSTONE_KEY
            and await self.store.state.get_current_state_event_id(room_id, *TOMBSTONE_KEY)
            == event.event_id
        ):
            await self.tombstone_hook(room_id, event)

    async def after_run_stored(self, events: Sequence[Event]) -> None:
        """A run of accepted live events of one room was stored: wake /sync, then each
        event's :meth:`after_accepted`."""
        self.notifier.notify([events[0].room_id])
        for event in events:
            await self.after_accepted(event)

    async def persist_joined_room(
        self,
        room_version: RoomVersion,
        join_event: Event,
        state: Sequence[Event],
        auth_chain: Sequence[Event],
    ) -> None:
        """After a remote ``send_join``: see :meth:`JoinedRoomPersister.persist_joined_room`."""
        await self.joined_rooms.persist_joined_room(room_version, join_event, state, auth_chain)

    # --- the pipeline ------------------------------------------------------------------------
    async def _process(self, origin: str, event: Event, *, fill_gaps: bool) -> None:
        room_id = event.room_id
        room_version = await self.room_version_of(room_id)
        if room_version.identifier != event.room_version.identifier:
            raise UnknownRoom("the event was parsed with another room version")
        stored = await self.store.events.get_event(event.event_id)
        if stored is not None:
            if stored.rejected:
                raise EventRejected(f"rejected: {stored.internal.rejected_reason}")
            # A repeat. (An event first stored as an outlier — fetched as state or auth — stays
            # one: turning outliers into timeline events is not supported yet.)
            return
        prevs = event.prev_event_ids()
        groups = await self.store.state.get_state_group_for_events(prevs)
        if fill_gaps and any(p not in groups for p in prevs):
            await self._fill_gap(origin, room_version, event)
            groups = await self.store.state.get_state_group_for_events(prevs)
        spec, state_before = await self.states.state_before(origin, room_version, event, groups)
        await self._authorise(origin, room_version, event, state_before)
        await self._persist(room_version, event, spec, state_before)
        if event.rejected:
            raise EventRejected(f"rejected: {event.internal.rejected_reason}")

    async def _fill_gap(self, origin: str, room_version: RoomVersion, event: Event) -> None:
        room_id = event.room_id
        extremities = await self.store.events.get_forward_extremities(room_id)
        try:
            missing = await self.fetcher.get_missing_events(
                origin,
                room_version,
                room_id,
                earliest=extremities.event_ids,
                latest=[event.event_id],
                min_depth=await self.store.federation_inbound.get_min_depth(room_id),
            )
        except FederationError as e:
            logger.info("get_missing_events for %s from %s failed: %s", room_id, origin, e)
            return
        for gap_event in missing:
            if gap_event.event_id == event.event_id:
                continue
            try:
                await self._process(origin, gap_event, fill_gaps=False)
            except PduRejected as e:
                logger.info("gap event %s not accepted: %s", gap_event.event_id, e.reason)

    async def _authorise(
        self, origin: str, room_version: RoomVersion, event: Event, state_before: StateMap
    ) -> None:
        """Steps 4-6: sets ``rejected_reason`` or ``soft_failed`` on ``event``."""
        if event.rejected:  # refused by the format check already (soft size limits)
            return
        auth_by_id = await self.auth_chains.auth_events_of(origin, room_version, event)
        auth_events = [auth_by_id[a] for a in event.auth_event_ids() if a in auth_by_id]
        create = create_event_for(event, auth_events, auth_by_id)
        if create is None and CREATE_KEY in state_before:
            create = (await self.store.events.get_events([state_before[CREATE_KEY]])).get(
                state_before[CREATE_KEY]
            )
        try:
            check_event_auth(room_version, event, auth_events, create)
            await self.auth_chains.check_against(room_version, event, state_before)
        except AuthError as e:
            logger.info("rejecting %s: %s", event.event_id, e.reason)
            event.internal.rejected_reason = e.reason
            return
        extremities = await self.store.events.get_forward_extremities(event.room_id)
        if set(extremities.event_ids) == set(event.prev_event_ids()):
            return  # the state before it is the current state
        current = await self.store.state.get_current_state_ids(event.room_id)
        try:
            await self.auth_chains.check_against(room_version, event, current)
        except AuthError as e:
            logger.info("soft-failing %s: %s", event.event_id, e.reason)
            event.internal.soft_failed = True

    async def _persist(
        self, room_version: RoomVersion, event: Event, spec: StateBefore, state_before: StateMap
    ) -> None:
        room_id = event.room_id
        for _ in range(PERSIST_ATTEMPTS):
            # The current state at a fork is resolved outside the write transaction; a local
            # event landing meanwhile changes the extremities, and then it is resolved again.
            seen = await self.store.events.get_forward_extremities(room_id)
            current_group = await self.states.resolved_current_state(
                room_version, event, state_before, seen.event_ids
            )
            try:
                await self.store.db.run_in_transaction(
                    "receive_pdu", self._persist_txn, event, spec, seen.event_ids, current_group
                )
                break
            except _ExtremitiesMoved:
                continue
        else:
            raise PduRejected("the room kept changing while the event was being stored")
        self.notifier.notify([room_id])
        if event.rejected or event.internal.soft_failed:
            return
        await self.after_accepted(event)

    async def _persist_txn(
        self,
        txn: Transaction,
        event: Event,
        spec: StateBefore,
        seen_extremities: list[str],
        current_group: tuple[int | None, StateMap] | None,
    ) -> None:
        room_id = event.room_id
        await self.store.persister.lock_rooms_txn(txn, [room_id])
        group: int | None = None
        if event.rejected or event.internal.soft_failed:
            # Neither moves the current state (a rejected event's "after" group is the state
            # before it, possibly on a stale branch).
            group = await self.store.state.get_current_state_group(room_id, txn=txn)
        else:
            extremities = await self.store.events.get_forward_extremities(room_id, txn=txn)
            if extremities.event_ids != seen_extremities:
                raise _ExtremitiesMoved(room_id)
            if current_group is not None:
                base, state = current_group
                base_state = (
                    await self.store.state.get_state_group_ids(base, txn=txn)
                    if base is not None
                    else {}
                )
                group = await self.store.state.create_state_group_txn(
                    txn, room_id, base, diff_states(base_state, state)
                )
        await self.store.persist_events_txn(txn, [(event, spec)], None, group)
