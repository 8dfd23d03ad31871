"""Reading events: by ID (with an LRU of recent events), forward extremities, auth chains.

Events come back as :class:`~homeserver.events.event.Event` built with the room version stored
beside the event, carrying the stored rejection/outlier/redaction flags and stream ordering.
The JSON column holds the canonical JSON of the PDU, so what comes out is byte-for-byte what went
in. Writing lives in :mod:`homeserver.storage.persist`.

Cached events are shared: callers must treat them as read-only. An event's JSON never changes;
its flags can (a later redaction), and whoever changes them calls :meth:`EventsStore.invalidate`
(and, once several processes share a database, broadcasts it — DESIGN.md §7).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from homeserver.crypto.canonical_json import parse_json
from homeserver.events.event import Event, InternalMetadata
from homeserver.room_versions import get_room_version
from homeserver.storage.database import Database, Row, Transaction, in_chunks, placeholders
from homeserver.storage.stream_ids import EVENTS_STREAM, persisted_up_to

#: the IN lists of one query stay below both engines' parameter limits.
_CHUNK = 500

_EVENT_COLUMNS = (
    "event_id, room_version, json, rejected_reason, outlier, stream_ordering, redacted,"
    " soft_failed, replaces_state"
)


@dataclass(frozen=True, slots=True)
class ForwardExtremities:
    event_ids: list[str]
    #: the greatest depth among them (0 for a room with none).
    max_depth: int


def event_from_row(row: Row) -> Event:
    (
        event_id,
        room_version,
        json_text,
        rejected_reason,
        outlier,
        stream_ordering,
        redacted,
        soft_failed,
        replaces_state,
    ) = row
    return Event(
        parse_json(json_text),
        get_room_version(room_version),
        event_id=event_id,
        internal=InternalMetadata(
            rejected_reason=rejected_reason,
            outlier=bool(outlier),
            stream_ordering=int(stream_ordering),
            redacted=bool(redacted),
            soft_failed=bool(soft_failed),
            replaces_state=replaces_state,
        ),
    )


class EventsStore:
    def __init__(self, db: Database, cache_size: int = 10_000) -> None:
        self.db = db
        self._cache: OrderedDict[str, Event] = OrderedDict()
        self._cache_size = cache_size
        #: Bumped by every invalidation: a read that started before one does not cache what it
        #: read (it may be the row as it was before another process's change).
        self._invalidations = 0
        #: Off while other processes' invalidations cannot reach this one (Redis unreachable).
        self._caching = True
        #: Told each invalidation made here (event IDs; ``None``: everything), to pass on to
        #: the other processes (``streams/redis_bus.py``).
        self.invalidation_listeners: list[Callable[[list[str] | None], None]] = []

    # --- the event cache -------------------------------------------------------------
    def _remember(self, event: Event) -> None:
        if not self._caching:
            return
        self._cache[event.event_id] = event
        self._cache.move_to_end(event.event_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def invalidate(self, event_id: str) -> None:
        """Drop ``event_id`` from the cache (its flags changed), here and in other processes."""
        self.forget([event_id])
        for listener in self.invalidation_listeners:
            listener([event_id])

    def clear_cache(self) -> None:
        self.forget(None)
        for listener in self.invalidation_listeners:
            listener(None)

    def forget(self, event_ids: Iterable[str] | None) -> None:
        """Drop ``event_ids`` (``None``: every event) from this process's cache only."""
        self._invalidations += 1
        if event_ids is None:
            self._cache.clear()
        else:
            for event_id in event_ids:
                self._cache.pop(event_id, None)

    def set_caching(self, on: bool) -> None:
        """Keep events in memory or not (emptied either way)."""
        self._caching = on
        self.forget(None)

    # --- events by ID --------------------------------------------------------------------
    async def get_event(self, event_id: str) -> Event | None:
        return (await self.get_events([event_id])).get(event_id)

    async def get_events(
        self, event_ids: Iterable[str], *, txn: Transaction | None = None
    ) -> dict[str, Event]:
        """The stored events among ``event_ids`` (missing IDs are left out).

        Inside a transaction pass ``txn``: a second pool connection could deadlock against
        the transaction's own, and what it reads there is not cached (it may roll back)."""
        found: dict[str, Event] = {}
        missing: list[str] = []
        for event_id in dict.fromkeys(event_ids):
            cached = self._cache.get(event_id)
            if cached is None:
                missing.append(event_id)
            else:
                self._cache.move_to_end(event_id)
                found[event_id] = cached
        invalidations = self._invalidations
        for chunk in in_chunks(missing, _CHUNK):
            rows = await (txn or self.db.indexed).fetchall(
                f"SELECT {_EVENT_COLUMNS} FROM events"
                f" WHERE event_id IN ({placeholders(len(chunk))})",
                *chunk,
            )
            for row in rows:
                event = event_from_row(row)
                if txn is None and self._invalidations == invalidations:
                    self._remember(event)
                found[event.event_id] = event
        return found

    async def get_event_ids_present(self, event_ids: Iterable[str]) -> set[str]:
        """Which of ``event_ids`` are stored (without loading them)."""
        ids = list(set(event_ids))
        present: set[str] = set()
        for chunk in in_chunks(ids, _CHUNK):
            rows = await self.db.fetchall(
                f"SELECT event_id FROM events WHERE event_id IN ({placeholders(len(chunk))})",
                *chunk,
            )
            present.update(r[0] for r in rows)
        return present

    # --- room timeline facts ---------------------------------------------------------------
    async def get_forward_extremities(
        self, room_id: str, *, txn: Transaction | None = None
    ) -> ForwardExtremities:
        """The room's forward extremities, oldest first. Pass the ``txn`` that locked the room
        (``store.persister.lock_rooms_txn``) to read them race-free before building an event."""
        rows = await (txn or self.db.indexed).fetchall(
            "SELECT f.event_id, e.topological_ordering FROM event_forward_extremities f"
            " JOIN events e ON e.event_id = f.event_id WHERE f.room_id = ?"
            " ORDER BY e.topological_ordering, e.stream_ordering",
            room_id,
        )
        return ForwardExtremities(
            event_ids=[r[0] for r in rows], max_depth=max((int(r[1]) for r in rows), default=0)
        )

    async def get_max_stream_ordering(self) -> int:
        """The events stream's persisted-up-to position: every event at or below it is
        committed (or its writer gave up), so a reader that hands it out never skips an event
        committed later (0 when no event was ever stored)."""
        return await persisted_up_to(self.db, EVENTS_STREAM)

    async def get_auth_chain_ids(
        self, room_id: str, event_ids: Iterable[str], *, include_given: bool = False
    ) -> set[str]:
        """Every event reachable from ``event_ids`` (events of ``room_id``) through auth edges
        (for state resolution). One recursive query; ``UNION`` (not ``UNION ALL``) makes it
        stop on shared ancestors. Auth events are in their event's room: the edges are keyed
        by room first (migration 038)."""
        ids = list(set(event_ids))
        if not ids:
            return set()
        chain: set[str] = set()
        for chunk in in_chunks(ids, _CHUNK):
            rows = await self.db.fetchall(
                "WITH RECURSIVE chain (id) AS ("
                " SELECT auth_id FROM event_auth"
                f" WHERE room_id = ? AND event_id IN ({placeholders(len(chunk))})"
                " UNION SELECT a.auth_id FROM event_auth a JOIN chain c"
                " ON a.room_id = ? AND a.event_id = c.id"
                ") SELECT id FROM chain",
                room_id,
                *chunk,
                room_id,
            )
            chain.update(r[0] for r in rows)
        if include_given:
            chain.update(ids)
        return chain
