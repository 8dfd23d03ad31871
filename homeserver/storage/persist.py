"""Persisting a batch of events of one room in one transaction.

The caller says what the state was just before each event (:data:`StateBefore`):

* an ``int`` — an existing state group (usually the room's current state group, or the group
  after the event's single prev event);
* a :class:`ResolvedState` — a full state map the caller computed (state resolution at a merge),
  stored as a new group, as a delta against ``base_group`` when given;
* ``None`` — the state after the previous event of the same batch; for the first event of a
  batch this is only allowed for ``m.room.create`` (the empty state before a room exists).

Outliers carry no state (their spec must be ``None``) and touch neither state, current state nor
forward extremities. Soft-failed events (``internal.soft_failed``, received over federation) get
their state groups but touch neither current state nor forward extremities.

Stored per event: the state group before and after it (``event_to_state_groups``; after == before
for non-state and rejected events; a state event's "after" group is a one-row delta), and for an
accepted state event the event it replaced at its key in the state before it (``replaces_state``,
which clients see with its content as ``unsigned.prev_content``). Forward
extremities become (old ∪ new accepted events) − (their prev events) − (events some stored
accepted event already points to). Current state moves to the "after" group of the batch's last
accepted event, or to ``current_state_group=`` when the caller resolved the room's extremities.

Concurrency: the room's row is locked first (``FOR UPDATE`` on PostgreSQL; SQLite has a single
writer), so two writers to one room run one after the other and the second sees the first's
extremities. Stream orderings are then allocated (``storage/stream_ids.py``: a sequence on
PostgreSQL, no lock held until commit), so within one room they increase in commit order; across
rooms writers commit in any order, and readers use the events stream's persisted-up-to position
(``EventsStore.get_max_stream_ordering``), never the newest committed ordering. When one
transaction persists to several rooms (an upgrade), lock them up front with
:meth:`EventPersister.lock_rooms_txn` in one sorted pass; deadlocks are retried by
``run_in_transaction`` anyway. The time spent waiting for the room lock and for the allocation
is reported through ``Database.lock_wait_observers`` (lock names ``room`` and
``stream_id:events``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from homeserver.crypto.canonical_json import canonical_json_text, parse_json
from homeserver.events.event import Event
from homeserver.events.state_keys import StateKey
from homeserver.storage.database import Database, Transaction, placeholders
from homeserver.storage.device_list_invalidation import (
    joins_before_current_state_update_txn,
    mark_remote_device_lists_stale_on_new_sharing_txn,
)
from homeserver.storage.errors import UnknownRoomError
from homeserver.storage.events import EventsStore
from homeserver.storage.media import insert_references_txn as insert_media_references_txn
from homeserver.storage.redaction_apply import apply_redactions_txn
from homeserver.storage.relations import insert_relations_txn
from homeserver.storage.room_servers import record_membership_changes_txn
from homeserver.storage.rooms import NewRoom, RoomsStore
from homeserver.storage.search import insert_search_rows_txn
from homeserver.storage.state import (
    StateDelta,
    StateStore,
    diff_states,
)
from homeserver.storage.stream_ids import EVENTS_STREAM, allocate_txn
from homeserver.storage.user_directory import on_current_state_txn as user_directory_txn


@dataclass(frozen=True, slots=True)
class ResolvedState:
    """The full state before an event, computed by the caller."""

    state: Mapping[StateKey, str]
    #: a group close to ``state`` (e.g. one prev event's), so only the difference is stored.
    base_group: int | None = None


StateBefore = int | ResolvedState | None


@dataclass(frozen=True, slots=True)
class PersistedEvent:
    event_id: str
    stream_ordering: int
    #: None for outliers.
    state_group_before: int | None
    state_group_after: int | None


@dataclass(frozen=True, slots=True)
class PersistResult:
    #: the newly stored events in batch order (events already stored are left out).
    events: list[PersistedEvent]
    #: the room's current state group after the batch.
    current_state_group: int | None


@dataclass(slots=True)
class _BatchGroups:
    """The state groups a batch made."""

    #: event ID → (group before, group after), for the batch's new non-outlier events.
    around: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: group made here → (the group it was built on, its delta): the current-state update
    #: follows these instead of comparing whole states.
    made: dict[int, tuple[int | None, StateDelta]] = field(default_factory=dict)


_event_id = attrgetter("event_id")


def _batch_room(batch: Sequence[tuple[Event, StateBefore]], new_room: NewRoom | None) -> str:
    """The one room of ``batch`` (a caller's mistake otherwise)."""
    if not batch:
        raise ValueError("empty batch")
    room_id = batch[0][0].room_id
    if any(event.room_id != room_id for event, _ in batch):
        raise ValueError("persist_events takes the events of one room")
    if new_room is not None and new_room.room_id != room_id:
        raise ValueError("new_room is not the events' room")
    return room_id


def _not_yet_stored(
    batch: Sequence[tuple[Event, StateBefore]], stored_after: Mapping[str, int | None]
) -> list[tuple[Event, StateBefore]]:
    """The events of ``batch`` not stored yet, each once, in batch order."""
    fresh: list[tuple[Event, StateBefore]] = []
    seen = set(stored_after)
    for event, spec in batch:
        if event.event_id not in seen:
            seen.add(event.event_id)
            fresh.append((event, spec))
    return fresh


def _moving_the_room(fresh: list[tuple[Event, StateBefore]]) -> list[Event]:
    """The events that move the forward extremities: not outliers, rejected or soft-failed
    (those are stored with their state but leave the room's tips alone)."""
    return [
        e
        for e, _ in fresh
        if not e.internal.outlier and not e.rejected and not e.internal.soft_failed
    ]


def _last_state_after(
    fresh: list[tuple[Event, StateBefore]], around: Mapping[str, tuple[int, int]]
) -> int | None:
    """The group after the batch's last event that moves current state (None: no such)."""
    last = next(
        (
            e.event_id
            for e, _ in reversed(fresh)
            if e.event_id in around and not e.internal.soft_failed
        ),
        None,
    )
    return None if last is None else around[last][1]


class EventPersister:
    def __init__(
        self, db: Database, events: EventsStore, state: StateStore, rooms: RoomsStore
    ) -> None:
        self.db = db
        self.events = events
        self.state = state
        self.rooms = rooms
        #: called after each commit with the events it newly stored (metrics count them).
        self.listeners: list[Callable[[Sequence[Event]], None]] = []

    async def persist_events(
        self,
        batch: Sequence[tuple[Event, StateBefore]],
        *,
        new_room: NewRoom | None = None,
        current_state_group: int | None = None,
    ) -> PersistResult:
        """Store ``batch`` (one room, in order) in one transaction; see the module docstring."""
        return await self.db.run_in_transaction(
            "persist_events",
            self.persist_events_txn,
            batch,
            new_room,
            current_state_group,
        )

    async def forget_forward_extremities_txn(self, txn: Transaction, room_id: str) -> None:
        """Drop the room's forward extremities: for a rejoin through another server, whose join
        (on the room as it is now) supersedes everything we had from before we left."""
        await txn.execute("DELETE FROM event_forward_extremities WHERE room_id = ?", room_id)

    async def lock_rooms_txn(self, txn: Transaction, room_ids: Sequence[str]) -> None:
        """Lock several rooms' rows in a fixed order (avoids deadlocks between writers)."""
        started = time.monotonic()
        for room_id in sorted(set(room_ids)):
            await txn.lock_row("rooms", "room_id", room_id)
        txn.observe_lock_wait("room", time.monotonic() - started)

    async def persist_events_txn(
        self,
        txn: Transaction,
        batch: Sequence[tuple[Event, StateBefore]],
        new_room: NewRoom | None = None,
        current_state_group: int | None = None,
    ) -> PersistResult:
        """:meth:`persist_events` inside the caller's transaction (to compose room creation
        with aliases, outbox entries…). Caches and ``event.internal.stream_ordering`` are
        updated after commit."""
        room_id = _batch_room(batch, new_room)
        room_exists = await self._create_or_lock_room(txn, room_id, batch, new_room)
        # A room made in this transaction has no stored events, extremities or current state
        # yet: its genesis skips those look-ups (createRoom's hot path).
        new = new_room is not None
        stored_after = (
            {} if new else await self._already_stored(txn, [e.event_id for e, _ in batch])
        )
        fresh = _not_yet_stored(batch, stored_after)
        groups = await self._make_state_groups(txn, room_id, batch, fresh, stored_after)
        orderings = await self._insert_events(txn, room_id, fresh, groups.around)
        await self._update_extremities(txn, room_id, _moving_the_room(fresh), new_room=new)
        target = current_state_group
        if target is None:
            target = _last_state_after(fresh, groups.around)
        if target is not None:
            await self._update_current_state(txn, room_id, target, groups.made, fresh, new_room=new)
        self._update_caches_after_commit(txn, fresh, orderings)
        persisted = [
            PersistedEvent(
                e.event_id, orderings[e.event_id], *groups.around.get(e.event_id, (None, None))
            )
            for e, _ in fresh
        ]
        if target is None and room_exists:
            target = await txn.fetchval(
                "SELECT current_state_group FROM rooms WHERE room_id = ?", room_id
            )
        return PersistResult(persisted, target)

    async def _create_or_lock_room(
        self,
        txn: Transaction,
        room_id: str,
        batch: Sequence[tuple[Event, StateBefore]],
        new_room: NewRoom | None,
    ) -> bool:
        """Insert ``new_room`` or lock the room's row (writers to one room queue here); whether
        the room exists. Only outliers may be stored for a room we do not have."""
        if new_room is not None:
            # The insert locks the new row.
            await self.rooms.create_room_txn(txn, new_room)
            return True
        started = time.monotonic()
        room_exists = await txn.lock_row("rooms", "room_id", room_id)
        txn.observe_lock_wait("room", time.monotonic() - started)
        if not room_exists and not all(event.internal.outlier for event, _ in batch):
            raise UnknownRoomError(room_id)
        return room_exists

    async def _make_state_groups(
        self,
        txn: Transaction,
        room_id: str,
        batch: Sequence[tuple[Event, StateBefore]],
        fresh: list[tuple[Event, StateBefore]],
        stored_after: Mapping[str, int | None],
    ) -> _BatchGroups:
        """The state groups before and after each new non-outlier event of ``batch``, written
        (and flushed, since ``event_to_state_groups`` refers to them) in this transaction."""
        groups = _BatchGroups()
        prev_after: int | None = None
        # One group per accepted state event, plus possibly one for the state before the first.
        self.state.expect_groups_txn(
            txn,
            1
            + sum(
                1 for e, _ in fresh if e.is_state() and not e.rejected and not e.internal.outlier
            ),
        )
        for event, spec in batch:
            if event.event_id in stored_after:
                # A repeat of a stored event: the next event of the batch follows its state.
                stored_group = stored_after[event.event_id]
                if stored_group is not None:
                    prev_after = stored_group
                continue
            if event.internal.outlier:
                if spec is not None:
                    raise ValueError(f"outlier {event.event_id} given a state")
                continue
            if event.event_id in groups.around:
                continue
            before = await self._state_before(txn, room_id, event, spec, prev_after, groups.made)
            after = before
            if event.is_state() and not event.rejected:
                delta = {event.state_tuple: event.event_id}
                after = await self.state.create_state_group_txn(
                    txn, room_id, before, delta, event_id=event.event_id
                )
                groups.made[after] = (before, delta)
            groups.around[event.event_id] = (before, after)
            prev_after = after
        await self._record_replaced(txn, fresh, groups.around)
        await self.state.flush_txn(txn)
        return groups

    async def _record_replaced(
        self,
        txn: Transaction,
        fresh: list[tuple[Event, StateBefore]],
        around: Mapping[str, tuple[int, int]],
    ) -> None:
        """Set ``internal.replaces_state`` of the batch's accepted state events: the event at
        their key in the state before them. Along a run of events each built on the state the
        previous one left, the run answers; what lies before a run is looked up once per
        starting group, all its keys together (a batch of joins costs one query, not one per
        join)."""
        made_by: dict[int, Event] = {}
        for event, _ in fresh:
            if event.event_id in around and event.is_state() and not event.rejected:
                made_by[around[event.event_id][1]] = event
        unresolved: dict[int, dict[StateKey, list[Event]]] = {}
        # A linear run (each event built on the state the previous one left: a genesis, an
        # upgrade's joins) is followed with one map of the keys it set, so N joins cost N steps,
        # not N²/2; an event that branches off the run is walked back group by group.
        # A run may start on the empty state (a genesis: ``run_start`` None), hence ``in_run``.
        run_keys: dict[StateKey, str] = {}
        run_start: int | None = None
        run_tip: int | None = None
        in_run = False
        for after, event in made_by.items():
            key = event.state_tuple
            group = around[event.event_id][0]
            replaced: str | None = None
            if in_run and group == run_tip:
                replaced = run_keys.get(key)
                group = run_start
            elif group not in made_by:
                run_keys, run_start, in_run = {}, group, True
            else:
                while group in made_by:
                    earlier = made_by[group]
                    if earlier.state_tuple == key:
                        replaced = earlier.event_id
                        break
                    group = around[earlier.event_id][0]
                in_run = False
            if replaced is None:
                unresolved.setdefault(group, {}).setdefault(key, []).append(event)
            event.internal.replaces_state = replaced
            if in_run:
                run_keys[key] = event.event_id
                run_tip = after
        for group, by_key in unresolved.items():
            found = await self.state.get_state_entries_txn(txn, group, by_key)
            for key, events in by_key.items():
                for event in events:
                    replaced = found.get(key)
                    event.internal.replaces_state = None if replaced == event.event_id else replaced

    async def _insert_events(
        self,
        txn: Transaction,
        room_id: str,
        fresh: list[tuple[Event, StateBefore]],
        around: dict[str, tuple[int, int]],
    ) -> dict[str, int]:
        """Take the stream orderings of ``fresh`` and insert their rows; event ID → ordering.

        Called with the room's row locked, so a room's orderings increase in commit order."""
        if not fresh:
            return {}
        taken = await allocate_txn(txn, EVENTS_STREAM, len(fresh))
        orderings = {event.event_id: p for (event, _), p in zip(fresh, taken, strict=True)}
        await self._insert_rows(txn, room_id, fresh, orderings, around)
        return orderings

    def _update_caches_after_commit(
        self, txn: Transaction, fresh: list[tuple[Event, StateBefore]], orderings: dict[str, int]
    ) -> None:
        def after_commit() -> None:
            for event, _ in fresh:
                event.internal.stream_ordering = orderings[event.event_id]
                self.events._remember(event)
            stored = [event for event, _ in fresh]
            for listener in self.listeners:
                listener(stored)

        txn.call_after_commit(after_commit)

    # --- helpers ---------------------------------------------------------------------------
    async def _already_stored(
        self, txn: Transaction, event_ids: list[str]
    ) -> dict[str, int | None]:
        """Stored events among ``event_ids`` → their state group after (None for outliers)."""
        ids = list(set(event_ids))
        rows = await txn.fetchall(
            "SELECT e.event_id, s.state_group_after FROM events e"
            " LEFT JOIN event_to_state_groups s ON s.event_id = e.event_id"
            f" WHERE e.event_id IN ({placeholders(len(ids))})",
            *ids,
        )
        return {event_id: None if group is None else int(group) for event_id, group in rows}

    async def _state_before(
        self,
        txn: Transaction,
        room_id: str,
        event: Event,
        spec: StateBefore,
        prev_after: int | None,
        made: dict[int, tuple[int | None, StateDelta]],
    ) -> int:
        if isinstance(spec, int):
            return spec
        if isinstance(spec, ResolvedState):
            base = (
                {}
                if spec.base_group is None
                else await self.state.get_state_group_ids(spec.base_group, txn=txn)
            )
            delta = diff_states(base, spec.state)
            group = await self.state.create_state_group_txn(txn, room_id, spec.base_group, delta)
            made[group] = (spec.base_group, delta)
            return group
        if prev_after is not None:
            return prev_after
        if event.type == "m.room.create" and event.state_key == "":
            # The state before the create event is empty: an empty snapshot group.
            group = await self.state.create_state_group_txn(txn, room_id, None, {})
            made[group] = (None, {})
            return group
        raise ValueError(f"no state given for {event.event_id} and no previous event in the batch")

    async def _insert_rows(
        self,
        txn: Transaction,
        room_id: str,
        fresh: list[tuple[Event, StateBefore]],
        orderings: dict[str, int],
        groups: dict[str, tuple[int, int]],
    ) -> None:
        # ON CONFLICT: batches of outliers are not serialised by a room lock (their room may
        # have no row yet), so two requests fetching the same auth chain may both store it; the
        # copies are the same event, and the second writer's is simply dropped.
        await txn.executemany(
            "INSERT INTO events (event_id, room_id, room_version, stream_ordering,"
            " topological_ordering, type, state_key, sender, origin_server_ts, json,"
            " rejected_reason, outlier, redacted, soft_failed, replaces_state)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (event_id) DO NOTHING",
            [
                (
                    e.event_id,
                    room_id,
                    e.room_version.identifier,
                    orderings[e.event_id],
                    e.depth,
                    e.type,
                    e.state_key,
                    e.sender,
                    e.origin_server_ts,
                    canonical_json_text(e.pdu),
                    e.internal.rejected_reason,
                    e.internal.outlier,
                    e.internal.redacted,
                    e.internal.soft_failed,
                    e.internal.replaces_state,
                )
                for e, _ in fresh
            ],
        )
        # The link tables are keyed by event ID, a hash (edges and auth by room, then event
        # ID: one room per batch): rows in key order fill each B-tree leaf once, where hash
        # order visits every leaf again and again (a big batch, such as an upgrade's joins,
        # inserts them in about half the time).
        by_id = sorted((e for e, _ in fresh), key=_event_id)
        await txn.executemany(
            "INSERT INTO event_edges (event_id, prev_event_id, room_id) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            [(e.event_id, p, room_id) for e in by_id for p in e.prev_event_ids()],
        )
        await txn.executemany(
            "INSERT INTO event_auth (event_id, auth_id, room_id) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            [(e.event_id, a, room_id) for e in by_id for a in e.auth_event_ids()],
        )
        await txn.executemany(
            "INSERT INTO event_to_state_groups (event_id, state_group_before, state_group_after)"
            " VALUES (?, ?, ?)",
            [(e.event_id, *groups[e.event_id]) for e in by_id if e.event_id in groups],
        )
        await insert_media_references_txn(txn, (e for e, _ in fresh))
        await insert_search_rows_txn(txn, (e for e, _ in fresh), orderings)
        await insert_relations_txn(txn, (e for e, _ in fresh))
        redacted = await apply_redactions_txn(txn, self.events, (e for e, _ in fresh))
        if redacted:
            # A target stored in this same batch (its redaction came first) is about to be
            # cached from the object in hand, so that object carries the flag too.
            fresh_by_id = {e.event_id: e for e, _ in fresh}

            def forget_redacted() -> None:
                for event_id in redacted:
                    if event_id in fresh_by_id:
                        fresh_by_id[event_id].internal.redacted = True
                    self.events.invalidate(event_id)

            txn.call_after_commit(forget_redacted)

    async def _update_extremities(
        self, txn: Transaction, room_id: str, accepted: list[Event], *, new_room: bool
    ) -> None:
        if not accepted:
            return
        prev_set = {p for e in accepted for p in e.prev_event_ids()}
        prevs = list(prev_set)
        new_ids = [e.event_id for e in accepted]
        if new_room:
            # Nothing stored can point at these events: only the batch's own references count.
            await txn.executemany(
                "INSERT INTO event_forward_extremities (room_id, event_id) VALUES (?, ?)",
                [(room_id, event_id) for event_id in new_ids if event_id not in prev_set],
            )
            return
        if prevs:
            await txn.execute(
                "DELETE FROM event_forward_extremities"
                f" WHERE room_id = ? AND event_id IN ({placeholders(len(prevs))})",
                room_id,
                *prevs,
            )
        # Edges were inserted above, so this also sees references made within the batch. Only
        # accepted children count: a rejected event does not supersede its parents.
        rows = await txn.fetchall(
            "SELECT DISTINCT g.prev_event_id FROM event_edges g"
            " JOIN events c ON c.event_id = g.event_id"
            f" WHERE g.room_id = ? AND g.prev_event_id IN ({placeholders(len(new_ids))})"
            " AND c.outlier = FALSE AND c.rejected_reason IS NULL AND c.soft_failed = FALSE",
            room_id,
            *new_ids,
        )
        referenced = {r[0] for r in rows}
        await txn.executemany(
            "INSERT INTO event_forward_extremities (room_id, event_id) VALUES (?, ?)"
            " ON CONFLICT DO NOTHING",
            [(room_id, event_id) for event_id in new_ids if event_id not in referenced],
        )

    async def _update_current_state(
        self,
        txn: Transaction,
        room_id: str,
        target: int,
        made: dict[int, tuple[int | None, StateDelta]],
        fresh: list[tuple[Event, StateBefore]],
        *,
        new_room: bool,
    ) -> None:
        old = (
            None
            if new_room
            else await txn.fetchval(
                "SELECT current_state_group FROM rooms WHERE room_id = ?", room_id
            )
        )
        old = None if old is None else int(old)
        if old == target:
            return
        delta = self._delta_along_batch(old, target, made)
        if delta is None:
            # Not a straight line from the old current state (a fork was resolved, or the
            # caller chose another group): compare the two full states once.
            old_state = {} if old is None else await self.state.get_state_group_ids(old, txn=txn)
            new_state = await self.state.get_state_group_ids(target, txn=txn)
            delta = diff_states(old_state, new_state)
        elif old is not None:
            self.state.follow_txn(txn, old, target, delta)
        removed = [key for key, event_id in delta.items() if event_id is None]
        added = {key: event_id for key, event_id in delta.items() if event_id is not None}
        memberships = await self._memberships(txn, added, fresh)
        members_before = await record_membership_changes_txn(
            txn,
            room_id,
            {
                state_key: None if event_id is None else memberships.get(event_id)
                for (event_type, state_key), event_id in delta.items()
                if event_type == "m.room.member"
            },
            new_room=new_room,
        )
        for event_type, state_key in removed:
            await txn.execute(
                "DELETE FROM current_state_events WHERE room_id = ? AND type = ? AND state_key = ?",
                room_id,
                event_type,
                state_key,
            )
        # Joins that make a remote user start sharing a room with a local user make that
        # user's cached device list stale (their server told us nothing while none did).
        joins = await joins_before_current_state_update_txn(
            txn,
            room_id,
            [
                sk
                for (t, sk), eid in added.items()
                if t == "m.room.member" and memberships.get(eid) == "join"
            ],
            new_room=new_room,
            already_joined=[k for k, m in members_before.items() if m == "join"],
        )
        await txn.executemany(
            "INSERT INTO current_state_events (room_id, type, state_key, event_id, membership)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_id, type, state_key) DO UPDATE"
            " SET event_id = excluded.event_id, membership = excluded.membership",
            # In key order, as the link rows above: a batch of joins adds its members' keys in
            # the order it made the joins, not the order of the B-trees.
            [(room_id, t, sk, eid, memberships.get(eid)) for (t, sk), eid in sorted(added.items())],
        )
        await txn.execute(
            "UPDATE rooms SET current_state_group = ? WHERE room_id = ?", target, room_id
        )
        await mark_remote_device_lists_stale_on_new_sharing_txn(txn, joins)
        await user_directory_txn(txn, room_id, added, removed, {e.event_id: e for e, _ in fresh})

    @staticmethod
    def _delta_along_batch(
        old: int | None, target: int, made: dict[int, tuple[int | None, StateDelta]]
    ) -> StateDelta | None:
        """The combined delta from ``old`` to ``target`` if ``target`` was built from ``old``
        by groups made in this batch; else None."""
        steps: list[StateDelta] = []
        group: int | None = target
        while group != old:
            if group is None or group not in made:
                return None
            group, delta = made[group]
            steps.append(delta)
        combined: dict[StateKey, str | None] = {}
        for delta in reversed(steps):
            combined.update(delta)
        return combined

    async def _memberships(
        self,
        txn: Transaction,
        added: Mapping[StateKey, str],
        fresh: list[tuple[Event, StateBefore]],
    ) -> dict[str, str | None]:
        """``membership`` of the member events among ``added`` (from the batch, else stored)."""
        member_ids = {eid for (t, _), eid in added.items() if t == "m.room.member"}
        in_batch = {e.event_id: e.membership for e, _ in fresh if e.event_id in member_ids}
        missing = list(member_ids - in_batch.keys())
        if missing:
            rows = await txn.fetchall(
                "SELECT event_id, json FROM events"
                f" WHERE event_id IN ({placeholders(len(missing))})",
                *missing,
            )
            for event_id, json_text in rows:
                content = parse_json(json_text).get("content")
                membership = content.get("membership") if isinstance(content, dict) else None
                in_batch[event_id] = membership if isinstance(membership, str) else None
        return in_batch
