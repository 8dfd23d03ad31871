"""Build, authorise and persist local events: one at a time into an existing room, or a whole
batch built in memory (a room's genesis, an upgrade) and committed in one transaction.

Sending into an existing room runs under the room's row lock (PostgreSQL ``FOR UPDATE``; the
single writer on SQLite), so the prev events and the state the event is built on are the ones it
is committed on, across processes too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from homeserver.auth.rules import AuthError
from homeserver.auth.selection import auth_types_for_event
from homeserver.clock import WallClock, time_ms
from homeserver.errors import NotFound
from homeserver.events.builder import Signer
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.events.signing import DeferredSignatures
from homeserver.events.state_keys import CREATE_KEY, StateKey
from homeserver.events.validation import EventValidationError
from homeserver.room_versions import RoomVersion, get_room_version
from homeserver.rooms.event_builder import build_event
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.storage.rooms import RoomRecord
from homeserver.streams.fanout import enqueue_events_txn
from homeserver.streams.notifier import Notifier


@dataclass(slots=True)
class BatchBuilder:
    """Builds consecutive events of one room in memory, each on the state the previous left.

    ``state`` holds the events the auth rules may read (it starts with the room's current auth
    state when extending an existing room, and empty for a new room)."""

    room_version: RoomVersion
    signer: Signer
    room_id: str | None
    state: dict[StateKey, Event] = field(default_factory=dict)
    extremities: list[Event] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    clock: WallClock = time_ms
    #: leave signatures to this (signed together once the batch is built; its owner signs).
    deferred: DeferredSignatures | None = None

    def add(self, draft: EventDraft) -> Event:
        event = build_event(
            self.room_version,
            self.signer,
            draft,
            room_id=self.room_id,
            state=self.state,
            prev_events=self.extremities,
            origin_server_ts=self.clock(),
            deferred=self.deferred,
        )
        if self.room_id is None:
            self.room_id = event.room_id
        if event.is_state():
            self.state[event.state_tuple] = event
        self.extremities = [event]
        self.events.append(event)
        return event


class EventSender:
    def __init__(
        self,
        store: Store,
        signer: Signer,
        *,
        clock: WallClock = time_ms,
        notifier: Notifier | None = None,
    ) -> None:
        self.store = store
        self.signer = signer
        self.clock = clock
        self.notifier = notifier or Notifier()

    async def _auth_state(
        self,
        txn: Transaction,
        room_version: RoomVersion,
        group: int | None,
        drafts: Sequence[EventDraft],
    ) -> dict[StateKey, Event]:
        """The events of the room's state (``group``) that the auth rules of ``drafts`` may
        read: those keys only, not the whole state (a copy of a big room's state per send)."""
        wanted: set[StateKey] = {CREATE_KEY}
        for draft in drafts:
            wanted.update(
                auth_types_for_event(
                    room_version, draft.type, draft.sender, draft.state_key, draft.content
                )
            )
        if group is None:
            return {}
        state_ids = await self.store.state.get_state_entries_txn(txn, group, wanted)
        ids = set(state_ids.values())
        events = await self.store.events.get_events(ids, txn=txn)
        return {e.state_tuple: e for e in events.values()}

    async def _start_batch_txn(
        self, txn: Transaction, room: RoomRecord, drafts: Sequence[EventDraft]
    ) -> tuple[BatchBuilder, int | None]:
        """Lock the room and start a batch on its current extremities and the auth state
        ``drafts`` may read; also the current state group (the first event's state before)."""
        room_id = room.room_id
        room_version = get_room_version(room.room_version)
        await self.store.persister.lock_rooms_txn(txn, [room_id])
        extremities = await self.store.events.get_forward_extremities(room_id, txn=txn)
        group = await self.store.state.get_current_state_group(room_id, txn=txn)
        prev = await self.store.events.get_events(extremities.event_ids, txn=txn)
        batch = BatchBuilder(
            room_version,
            self.signer,
            room_id,
            state=await self._auth_state(txn, room_version, group, drafts),
            extremities=list(prev.values()),
            clock=self.clock,
        )
        return batch, group

    async def _persist_batch_txn(
        self, txn: Transaction, room_id: str, events: Sequence[Event], group: int | None
    ) -> None:
        specs = [(events[0], group)] + [(e, None) for e in events[1:]]
        await self.store.persist_events_txn(txn, specs)
        # Other servers in the room get the events through the outbox, queued in this txn.
        await enqueue_events_txn(txn, self.store, events, our_server=self.signer.server_name)
        txn.call_after_commit(lambda: self.notifier.notify([room_id]))

    async def send_txn(
        self, txn: Transaction, room: RoomRecord, drafts: Sequence[EventDraft]
    ) -> list[Event]:
        """Build and persist ``drafts`` in order inside the caller's transaction."""
        batch, group = await self._start_batch_txn(txn, room, drafts)
        for draft in drafts:
            batch.add(draft)
        await self._persist_batch_txn(txn, room.room_id, batch.events, group)
        return batch.events

    async def send_each_txn(
        self, txn: Transaction, room: RoomRecord, drafts: Sequence[EventDraft]
    ) -> list[Event | AuthError | EventValidationError]:
        """Like :meth:`send_txn`, but each draft stands alone: one the auth rules (or the
        format checks) refuse on the state the drafts before it left is not sent, and its
        place in the answer holds the refusal; the others are persisted together."""
        batch, group = await self._start_batch_txn(txn, room, drafts)
        outcomes: list[Event | AuthError | EventValidationError] = []
        for draft in drafts:
            try:
                outcomes.append(batch.add(draft))
            except (AuthError, EventValidationError) as e:
                outcomes.append(e)
        if batch.events:
            await self._persist_batch_txn(txn, room.room_id, batch.events, group)
        return outcomes

    async def send(self, room_id: str, draft: EventDraft) -> Event:
        events = await self.send_many(room_id, [draft])
        return events[0]

    async def send_many(self, room_id: str, drafts: Sequence[EventDraft]) -> list[Event]:
        room = await self.store.rooms.get_room(room_id)
        if room is None:
            raise NotFound("Unknown room")
        return await self.store.db.run_in_transaction(
            "send_events", self.send_txn, room, list(drafts), shared_commit=True
        )
