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

PDUs of one room are processed one at a time (a per-room lock), so prev events, extremities and
current state are read and written in order.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

from homeserver.auth.rules import AuthError, check_auth_rules, check_event_auth
from homeserver.auth.selection import CREATE_KEY, auth_types_for_event
from homeserver.auth.state_res import resolve_state
from homeserver.clock import WallClock
from homeserver.events.event import Event
from homeserver.federation.client import FederationError
from homeserver.federation.linear_runs import LinearRuns
from homeserver.federation.pdu_checks import (
    EventRejected,
    EventVerifier,
    PduRejected,
    UnknownRoom,
    check_pdu,
)
from homeserver.federation.remote_fetch import FederationRequester, RemoteEventFetcher
from homeserver.room_versions import RoomVersion, get_room_version
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.storage.persist import ResolvedState, StateBefore
from homeserver.storage.rooms import NewRoom
from homeserver.storage.state import StateKey, StateMap, diff_states
from homeserver.sync.notifier import Notifier

logger = logging.getLogger(__name__)

TombstoneHook = Callable[[str, Event], Awaitable[None]]
TOMBSTONE_KEY: StateKey = ("m.room.tombstone", "")
#: how many times storing a received event re-resolves the current state because local events
#: kept landing meanwhile, before giving up on it.
PERSIST_ATTEMPTS = 5


class _ExtremitiesMoved(Exception):
    """The room's forward extremities changed between resolving the current state and storing."""


#: rooms whose version is kept in memory before that cache starts over.
ROOM_VERSION_CACHE_SIZE = 100_000


def _state_after(state_before: Mapping[StateKey, str], event: Event) -> StateMap:
    state = dict(state_before)
    if event.is_state() and not event.rejected:
        state[event.state_tuple] = event.event_id
    return state


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
        self._runs = LinearRuns(self)

    def room_lock(self, room_id: str) -> asyncio.Lock:
        """The lock serialising received events of one room (held while one is processed)."""
        lock = self._room_locks.get(room_id)
        if lock is None:
            lock = asyncio.Lock()
            self._room_locks[room_id] = lock
        return lock

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

    async def persist_outliers(self, room_version: RoomVersion, events: Sequence[Event]) -> None:
        """Store checked events as outliers, each authorised against its own auth events (those
        failing are stored rejected; those whose auth events are nowhere to be found are not
        stored). Events already stored are left as they are."""
        if not events:
            return
        present = await self.store.events.get_event_ids_present(e.event_id for e in events)
        pending = {e.event_id: e for e in events if e.event_id not in present}
        needed = {a for e in pending.values() for a in e.auth_event_ids()}
        if room_version.room_id_is_create_event_hash:
            # v12 events do not cite the create event, but their auth reads it.
            needed.update("$" + e.room_id[1:] for e in pending.values())
        needed -= pending.keys()
        known: dict[str, Event] = dict(await self.store.events.get_events(needed))
        ordered: list[Event] = []
        # Auth events first: each round takes the events whose auth events are all known.
        while pending:
            ready = [e for e in pending.values() if all(a in known for a in e.auth_event_ids())]
            if not ready:
                logger.info("not storing %d outliers with unknown auth events", len(pending))
                break
            for event in sorted(ready, key=lambda e: e.depth):
                del pending[event.event_id]
                self._auth_outlier(room_version, event, known)
                known[event.event_id] = event
                ordered.append(event)
        if ordered:
            for event in ordered:
                event.internal.outlier = True
            await self.store.persist_events([(e, None) for e in ordered])

    def _auth_outlier(
        self, room_version: RoomVersion, event: Event, known: Mapping[str, Event]
    ) -> None:
        auth_events = [known[a] for a in event.auth_event_ids() if a in known]
        create = self._create_event_for(event, auth_events, known)
        try:
            check_event_auth(room_version, event, auth_events, create)
        except AuthError as e:
            event.internal.rejected_reason = e.reason

    @staticmethod
    def _create_event_for(
        event: Event, auth_events: Sequence[Event], known: Mapping[str, Event]
    ) -> Event | None:
        for auth_event in auth_events:
            if auth_event.is_state() and auth_event.state_tuple == CREATE_KEY:
                return auth_event
        if event.room_version.room_id_is_create_event_hash:
            return known.get("$" + event.room_id[1:])
        return None

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
            return await self._runs.receive(origin, events)

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
        spec, state_before = await self._state_before(origin, room_version, event, groups)
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

    async def _state_before(
        self,
        origin: str,
        room_version: RoomVersion,
        event: Event,
        groups: Mapping[str, int],
    ) -> tuple[StateBefore, StateMap]:
        """The state before ``event`` as a persist spec and as a map."""
        prevs = event.prev_event_ids()
        known_groups = list(dict.fromkeys(groups[p] for p in prevs if p in groups))
        missing = [p for p in prevs if p not in groups]
        if not missing and len(known_groups) == 1:
            group = known_groups[0]
            return group, await self.store.state.get_state_group_ids(group)
        state_sets = [await self.store.state.get_state_group_ids(g) for g in known_groups]
        for prev_id in missing:
            state_sets.append(
                await self._state_after_remote_prev(origin, room_version, event, prev_id)
            )
        resolved = await resolve_state(room_version, state_sets, self._fetch_events)
        base = known_groups[0] if known_groups else None
        return ResolvedState(resolved, base_group=base), resolved

    async def _fetch_events(self, event_ids: Collection[str]) -> Mapping[str, Event]:
        return await self.store.events.get_events(event_ids)

    async def _state_after_remote_prev(
        self, origin: str, room_version: RoomVersion, event: Event, prev_id: str
    ) -> StateMap:
        """The state after a prev event we lack, from ``origin`` (its events stored as outliers)."""
        room_id = event.room_id
        try:
            state_ids, auth_ids = await self.fetcher.get_state_ids(origin, room_id, prev_id)
            wanted = set(state_ids) | set(auth_ids) | {prev_id}
            lacking = wanted - await self.store.events.get_event_ids_present(wanted)
            fetched = await self.fetcher.get_events(origin, room_version, room_id, prev_id, lacking)
        except FederationError as e:
            raise PduRejected(f"could not get the state at prev event {prev_id}: {e}") from None
        await self.persist_outliers(room_version, fetched)
        loaded = await self.store.events.get_events(set(state_ids) | {prev_id})
        if prev_id not in loaded:
            raise PduRejected(f"could not get prev event {prev_id}")
        state: StateMap = {}
        for event_id in state_ids:
            state_event = loaded.get(event_id)
            if state_event is None or not state_event.is_state():
                raise PduRejected(f"could not get state event {event_id} at {prev_id}")
            if not state_event.rejected:
                state[state_event.state_tuple] = event_id
        return _state_after(state, loaded[prev_id])

    async def _auth_events_of(
        self, origin: str, room_version: RoomVersion, event: Event
    ) -> dict[str, Event]:
        wanted = event.auth_event_ids()
        found = await self.store.events.get_events(wanted)
        if all(a in found for a in wanted):
            return dict(found)
        try:
            chain = await self.fetcher.get_auth_chain(
                origin, room_version, event.room_id, event.event_id
            )
        except FederationError as e:
            logger.info("event_auth for %s from %s failed: %s", event.event_id, origin, e)
            chain = []
        await self.persist_outliers(room_version, chain)
        return dict(await self.store.events.get_events(wanted))

    async def _authorise(
        self, origin: str, room_version: RoomVersion, event: Event, state_before: StateMap
    ) -> None:
        """Steps 4-6: sets ``rejected_reason`` or ``soft_failed`` on ``event``."""
        if event.rejected:  # refused by the format check already (soft size limits)
            return
        auth_by_id = await self._auth_events_of(origin, room_version, event)
        auth_events = [auth_by_id[a] for a in event.auth_event_ids() if a in auth_by_id]
        create = self._create_event_for(event, auth_events, auth_by_id)
        if create is None and CREATE_KEY in state_before:
            create = (await self.store.events.get_events([state_before[CREATE_KEY]])).get(
                state_before[CREATE_KEY]
            )
        try:
            check_event_auth(room_version, event, auth_events, create)
            await self._check_against(room_version, event, state_before)
        except AuthError as e:
            logger.info("rejecting %s: %s", event.event_id, e.reason)
            event.internal.rejected_reason = e.reason
            return
        extremities = await self.store.events.get_forward_extremities(event.room_id)
        if set(extremities.event_ids) == set(event.prev_event_ids()):
            return  # the state before it is the current state
        current = await self.store.state.get_current_state_ids(event.room_id)
        try:
            await self._check_against(room_version, event, current)
        except AuthError as e:
            logger.info("soft-failing %s: %s", event.event_id, e.reason)
            event.internal.soft_failed = True

    async def _check_against(
        self, room_version: RoomVersion, event: Event, state: Mapping[StateKey, str]
    ) -> None:
        """The auth rules for ``event`` with its auth events taken from ``state``."""
        keys = [
            CREATE_KEY,
            *auth_types_for_event(
                room_version, event.type, event.sender, event.state_key, event.content
            ),
        ]
        ids = {state[k] for k in keys if k in state}
        events = await self.store.events.get_events(ids)
        check_auth_rules(room_version, event, {e.state_tuple: e for e in events.values()})

    async def _persist(
        self, room_version: RoomVersion, event: Event, spec: StateBefore, state_before: StateMap
    ) -> None:
        room_id = event.room_id
        for _ in range(PERSIST_ATTEMPTS):
            # The current state at a fork is resolved outside the write transaction; a local
            # event landing meanwhile changes the extremities, and then it is resolved again.
            seen = await self.store.events.get_forward_extremities(room_id)
            current_group = await self._resolved_current_state(
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

    async def _resolved_current_state(
        self,
        room_version: RoomVersion,
        event: Event,
        state_before: StateMap,
        extremities: Sequence[str],
    ) -> tuple[int | None, StateMap] | None:
        """When accepting ``event`` leaves the room with several forward extremities (given the
        room's ``extremities`` now), the resolution of the states at all of them (and the group
        to store it against); None when the event's own state after becomes the current state."""
        if event.rejected or event.internal.soft_failed:
            return None
        others = [e for e in extremities if e not in set(event.prev_event_ids())]
        if not others:
            return None
        groups = await self.store.state.get_state_group_for_events(others)
        state_sets = [_state_after(state_before, event)]
        for group in dict.fromkeys(groups.values()):
            state_sets.append(await self.store.state.get_state_group_ids(group))
        new_event = {event.event_id: event}

        async def fetch(ids: Collection[str]) -> Mapping[str, Event]:
            found = dict(await self.store.events.get_events([i for i in ids if i not in new_event]))
            found.update({i: new_event[i] for i in ids if i in new_event})
            return found

        resolved = await resolve_state(room_version, state_sets, fetch)
        base = await self.store.state.get_current_state_group(event.room_id)
        return base, resolved

    # --- joining a room hosted elsewhere -------------------------------------------------------
    async def _persist_join_txn(
        self, txn: Transaction, join_event: Event, state: StateMap, new_room: NewRoom | None
    ) -> None:
        if new_room is None:
            # A rejoin: our old extremities are from before we left and the resident's state
            # has moved on; building our next events on them would fork the room for nothing.
            await self.store.persister.lock_rooms_txn(txn, [join_event.room_id])
            await self.store.persister.forget_forward_extremities_txn(txn, join_event.room_id)
        await self.store.persist_events_txn(
            txn, [(join_event, ResolvedState(state))], new_room=new_room
        )

    async def persist_joined_room(
        self,
        room_version: RoomVersion,
        join_event: Event,
        state: Sequence[Event],
        auth_chain: Sequence[Event],
    ) -> None:
        """After a remote ``send_join``: check the auth chain and state (signatures, hashes,
        auth) and store them as outliers, create the room's row if we have none, and persist
        our join with that state as its state before. Raises :class:`PduRejected` if the state
        is unusable or the join does not pass the auth rules against it."""
        room_id = join_event.room_id
        async with self.room_lock(room_id):
            checked: dict[str, Event] = {}
            for event in [*auth_chain, *state]:
                if event.event_id in checked:
                    continue
                try:
                    ok = await check_pdu(room_version, event.pdu, self.keyring)
                except PduRejected as e:
                    logger.info("send_join: dropping %s: %s", event.event_id, e.reason)
                    continue
                if ok.room_id == room_id:
                    checked[ok.event_id] = ok
            await self.persist_outliers(room_version, list(checked.values()))
            state_ids = {e.event_id for e in state}
            stored = await self.store.events.get_events(state_ids)
            state_map: StateMap = {
                e.state_tuple: e.event_id
                for e in stored.values()
                if e.is_state() and not e.rejected and e.room_id == room_id
            }
            create_id = state_map.get(CREATE_KEY)
            create = stored.get(create_id) if create_id else None
            if create is None:
                raise PduRejected("send_join: the room state has no usable m.room.create")
            try:
                await self._check_against(room_version, join_event, state_map)
            except AuthError as e:
                raise EventRejected(f"our join does not pass the auth rules: {e.reason}") from None
            room = await self.store.rooms.get_room(room_id)
            new_room = None
            if room is None:
                creator = (
                    create.sender
                    if room_version.implicit_room_creator
                    else create.content.get("creator")
                )
                new_room = NewRoom(
                    room_id=room_id,
                    room_version=room_version.identifier,
                    creator=creator if isinstance(creator, str) else create.sender,
                    created_ts=self.clock(),
                )
            await self.store.db.run_in_transaction(
                "persist_joined_room", self._persist_join_txn, join_event, state_map, new_room
            )
        self.notifier.notify([room_id])
