"""Persisting a room we joined through another server: after our ``send_join`` there, the
room's state and auth chain it answered are checked and stored as outliers, the room's row is
made if we have none, and our join is stored on that state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

from homeserver.auth.rules import AuthError
from homeserver.clock import WallClock
from homeserver.events.event import Event
from homeserver.events.state_keys import CREATE_KEY
from homeserver.federation.auth_chains import AuthChains
from homeserver.federation.pdu_checks import EventRejected, EventVerifier, PduRejected, check_pdu
from homeserver.room_versions import RoomVersion
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.storage.persist import ResolvedState
from homeserver.storage.rooms import NewRoom
from homeserver.storage.state import StateMap
from homeserver.streams.notifier import Notifier

logger = logging.getLogger(__name__)


class JoinedRoomPersister:
    def __init__(
        self,
        *,
        store: Store,
        keyring: EventVerifier,
        auth_chains: AuthChains,
        notifier: Notifier,
        clock: WallClock,
        room_lock: Callable[[str], AbstractAsyncContextManager[None]],
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.auth_chains = auth_chains
        self.notifier = notifier
        self.clock = clock
        #: the lock serialising the received events of one room (held while storing the join).
        self.room_lock = room_lock

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
            checked = await self._checked(room_version, room_id, [*auth_chain, *state])
            await self.auth_chains.persist_outliers(room_version, checked)
            state_map, create = await self._stored_state(room_id, state)
            try:
                await self.auth_chains.check_against(room_version, join_event, state_map)
            except AuthError as e:
                raise EventRejected(f"our join does not pass the auth rules: {e.reason}") from None
            room = await self.store.rooms.get_room(room_id)
            new_room = None if room is not None else self._new_room(room_version, room_id, create)
            await self.store.db.run_in_transaction(
                "persist_joined_room", self._persist_join_txn, join_event, state_map, new_room
            )
        self.notifier.notify([room_id])

    async def _checked(
        self, room_version: RoomVersion, room_id: str, events: Sequence[Event]
    ) -> list[Event]:
        """The events of ``room_id`` among ``events`` that pass the checks on receipt (each
        once); the others are dropped."""
        checked: dict[str, Event] = {}
        for event in events:
            if event.event_id in checked:
                continue
            try:
                ok = await check_pdu(room_version, event.pdu, self.keyring)
            except PduRejected as e:
                logger.info("send_join: dropping %s: %s", event.event_id, e.reason)
                continue
            if ok.room_id == room_id:
                checked[ok.event_id] = ok
        return list(checked.values())

    async def _stored_state(self, room_id: str, state: Sequence[Event]) -> tuple[StateMap, Event]:
        """The state map of the accepted, stored events of ``state``, and its create event."""
        stored = await self.store.events.get_events({e.event_id for e in state})
        state_map: StateMap = {
            e.state_tuple: e.event_id
            for e in stored.values()
            if e.is_state() and not e.rejected and e.room_id == room_id
        }
        create_id = state_map.get(CREATE_KEY)
        create = stored.get(create_id) if create_id else None
        if create is None:
            raise PduRejected("send_join: the room state has no usable m.room.create")
        return state_map, create

    def _new_room(self, room_version: RoomVersion, room_id: str, create: Event) -> NewRoom:
        creator = (
            create.sender if room_version.implicit_room_creator else create.content.get("creator")
        )
        return NewRoom(
            room_id=room_id,
            room_version=room_version.identifier,
            creator=creator if isinstance(creator, str) else create.sender,
            created_ts=self.clock(),
        )

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
