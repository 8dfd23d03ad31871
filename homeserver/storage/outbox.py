"""The federation outbox: work for other servers, written in the same transaction as the event
that causes it, delivered by the federation sender with backoff (DESIGN.md §4).

An entry's payload says what it is: ``{"kind": "pdu", "event_id"}`` (the event JSON is read from
``events`` when it is sent), ``{"kind": "edu", "edu_type", "content"}`` or ``{"kind": "invite",
"room_id", "event_id", "room_version"}`` (delivered by ``v2/invite``). Entries of one destination
go out in ``id`` order. Beside them: each destination's backoff (``federation_destinations``),
the joined servers of a room (who receives a local event) and the remote signature an invite
comes back with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from homeserver.crypto.canonical_json import canonical_json_text, parse_json
from homeserver.storage.database import Database, Transaction, placeholders
from homeserver.storage.room_servers import joined_servers

logger = logging.getLogger(__name__)

OutboxListener = Callable[[set[str]], None]


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    destination: str
    payload: Any
    created_ts: int
    attempts: int
    next_attempt_ts: int
    #: the transaction it was put in (None: not sent yet) and that transaction's timestamp.
    txn_id: str | None = None
    txn_ts: int | None = None

    @property
    def kind(self) -> str:
        kind = self.payload.get("kind") if isinstance(self.payload, dict) else None
        return kind if isinstance(kind, str) else ""


@dataclass(frozen=True, slots=True)
class RetryState:
    """A destination's backoff (Synapse's ``destinations`` row)."""

    destination: str
    #: when it started failing; None while healthy.
    failure_ts: int | None
    #: the last failed attempt (0: none).
    retry_last_ts: int
    #: how long to wait after ``retry_last_ts`` (0: no wait).
    retry_interval_ms: int

    @property
    def next_attempt_ts(self) -> int:
        return self.retry_last_ts + self.retry_interval_ms


_ENTRY_COLUMNS = "id, destination, payload, created_ts, attempts, next_attempt_ts, txn_id, txn_ts"


def _entry(row: Sequence[Any]) -> OutboxEntry:
    return OutboxEntry(
        int(row[0]),
        row[1],
        parse_json(row[2]),
        int(row[3]),
        int(row[4]),
        int(row[5]),
        row[6],
        None if row[7] is None else int(row[7]),
    )


class _AssignedElsewhere(Exception):
    """Rolls back a transaction assignment that found an entry already assigned."""


@dataclass(slots=True)
class _QueuedDestinations:
    """A transaction's memo: the destinations it queued entries for, announced after commit."""

    names: set[str] = field(default_factory=set)


class OutboxStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._listeners: list[OutboxListener] = []

    def add_listener(self, listener: OutboxListener) -> None:
        """Call ``listener(destinations)`` after each commit that queued entries (the
        federation sender wakes those destinations), whoever wrote them."""
        self._listeners.append(listener)

    def remove_listener(self, listener: OutboxListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _announce_after_commit(self, txn: Transaction, destinations: Iterable[str]) -> None:
        queued = txn.context.get(_QueuedDestinations)
        if queued is None:
            fresh = txn.context.setdefault(_QueuedDestinations, _QueuedDestinations)
            txn.call_after_commit(lambda: self._announce(fresh.names))
            queued = fresh
        queued.names.update(destinations)

    def _announce(self, destinations: set[str]) -> None:
        for listener in list(self._listeners):
            try:
                listener(set(destinations))
            except Exception:
                logger.exception("outbox listener failed")

    async def enqueue_txn(
        self, txn: Transaction, destination: str, payload: Any, *, now: int
    ) -> int:
        self._announce_after_commit(txn, [destination])
        return int(
            await txn.fetchval(
                "INSERT INTO federation_outbox (destination, payload, created_ts, next_attempt_ts)"
                " VALUES (?, ?, ?, ?) RETURNING id",
                destination,
                canonical_json_text(payload),
                now,
                now,
            )
        )

    async def enqueue_many_txn(
        self, txn: Transaction, entries: Iterable[tuple[str, Any]], *, now: int
    ) -> None:
        """Queue ``(destination, payload)`` pairs, in order."""
        rows = [(d, canonical_json_text(p), now, now) for d, p in entries]
        if rows:
            self._announce_after_commit(txn, [row[0] for row in rows])
            await txn.executemany(
                "INSERT INTO federation_outbox (destination, payload, created_ts, next_attempt_ts)"
                " VALUES (?, ?, ?, ?)",
                rows,
            )

    async def get_due(self, now: int, limit: int = 100) -> list[OutboxEntry]:
        """Entries whose next attempt is due, oldest first."""
        rows = await self.db.fetchall(
            "SELECT id, destination, payload, created_ts, attempts, next_attempt_ts"
            " FROM federation_outbox WHERE next_attempt_ts <= ? ORDER BY id LIMIT ?",
            now,
            limit,
        )
        return [
            OutboxEntry(int(r[0]), r[1], parse_json(r[2]), int(r[3]), int(r[4]), int(r[5]))
            for r in rows
        ]

    async def delete(self, ids: list[int]) -> None:
        """Delivered: forget the entries."""
        if not ids:
            return
        async with self.db.transaction("outbox_delete") as txn:
            await txn.execute(
                f"DELETE FROM federation_outbox WHERE id IN ({placeholders(len(ids))})", *ids
            )

    async def reschedule(self, ids: list[int], next_attempt_ts: int) -> None:
        """A failed attempt: count it and wait until ``next_attempt_ts``."""
        if not ids:
            return
        async with self.db.transaction("outbox_reschedule") as txn:
            await txn.execute(
                "UPDATE federation_outbox SET attempts = attempts + 1, next_attempt_ts = ?"
                f" WHERE id IN ({placeholders(len(ids))})",
                next_attempt_ts,
                *ids,
            )

    # --- the sender's view: one destination's queue ---------------------------------------
    async def destinations_with_entries(self) -> list[str]:
        """Every destination something is queued for (catch-up after a restart, and the
        sender's poll every second). One index probe per destination (a loose index scan over
        ``(destination, id)``), not a scan of every queued row: a destination down for days
        may have a long queue."""
        rows = await self.db.fetchall(
            "WITH RECURSIVE d (destination) AS ("
            " SELECT MIN(destination) FROM federation_outbox"
            " UNION ALL"
            " SELECT (SELECT MIN(o.destination) FROM federation_outbox o"
            " WHERE o.destination > d.destination)"
            " FROM d WHERE d.destination IS NOT NULL)"
            " SELECT destination FROM d WHERE destination IS NOT NULL"
        )
        return sorted(r[0] for r in rows)

    async def pending_by_destination(self) -> dict[str, int]:
        """Destination → entries queued for it (the metrics' queue depth)."""
        rows = await self.db.fetchall(
            "SELECT destination, COUNT(*) FROM federation_outbox GROUP BY destination"
        )
        return {r[0]: int(r[1]) for r in rows}

    async def head(self, destination: str, limit: int) -> list[OutboxEntry]:
        """The oldest ``limit`` entries queued for ``destination``, in queue order."""
        rows = await self.db.fetchall(
            f"SELECT {_ENTRY_COLUMNS} FROM federation_outbox WHERE destination = ?"
            " ORDER BY id LIMIT ?",
            destination,
            limit,
        )
        return [_entry(r) for r in rows]

    async def assign_transaction(self, ids: list[int], txn_id: str, txn_ts: int) -> bool:
        """Fix the entries of a transaction before it is first sent, so that every retry (after
        a restart, or by the process taking the destination over) resends the same ID with the
        same entries. Only entries in no transaction yet are taken: False (nothing written)
        when one already is — another process put it in one; read the head again."""
        try:
            async with self.db.transaction("outbox_assign_transaction") as txn:
                changed = await txn.execute(
                    "UPDATE federation_outbox SET txn_id = ?, txn_ts = ?"
                    f" WHERE id IN ({placeholders(len(ids))}) AND txn_id IS NULL",
                    txn_id,
                    txn_ts,
                    *ids,
                )
                if changed != len(ids):
                    raise _AssignedElsewhere
        except _AssignedElsewhere:
            return False
        return True

    # --- backoff per destination ------------------------------------------------------------
    async def get_retry_state(self, destination: str) -> RetryState | None:
        row = await self.db.fetchone(
            "SELECT destination, failure_ts, retry_last_ts, retry_interval_ms"
            " FROM federation_destinations WHERE destination = ?",
            destination,
        )
        if row is None:
            return None
        return RetryState(row[0], None if row[1] is None else int(row[1]), int(row[2]), int(row[3]))

    async def set_retry_state(self, state: RetryState) -> None:
        async with self.db.transaction("outbox_set_retry_state") as txn:
            await txn.execute(
                "INSERT INTO federation_destinations"
                " (destination, failure_ts, retry_last_ts, retry_interval_ms) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (destination) DO UPDATE SET failure_ts = excluded.failure_ts,"
                " retry_last_ts = excluded.retry_last_ts,"
                " retry_interval_ms = excluded.retry_interval_ms",
                state.destination,
                state.failure_ts,
                state.retry_last_ts,
                state.retry_interval_ms,
            )

    # --- fan-out and invites ----------------------------------------------------------------
    async def joined_servers_txn(self, txn: Transaction, room_id: str, our_server: str) -> set[str]:
        """The other servers with a member joined to ``room_id`` in its current state (one
        indexed read of the per-server counts, storage/room_servers.py)."""
        return await joined_servers(txn, room_id, other_than=our_server)

    async def add_event_signatures(
        self, event_id: str, server_name: str, signatures: dict[str, str]
    ) -> bool:
        """Add ``server_name``'s signatures to the stored JSON of ``event_id`` (an invitee's
        server signs our invite). Signatures are not part of the reference hash, so the event
        ID stays. False if the event is unknown. The caller invalidates cached copies."""
        async with self.db.transaction("outbox_add_event_signatures") as txn:
            text = await txn.fetchval("SELECT json FROM events WHERE event_id = ?", event_id)
            if text is None:
                return False
            pdu = parse_json(text)
            pdu.setdefault("signatures", {}).setdefault(server_name, {}).update(signatures)
            await txn.execute(
                "UPDATE events SET json = ? WHERE event_id = ?", canonical_json_text(pdu), event_id
            )
        return True
