"""Stream positions: allocating them without a global lock, and how far a stream is persisted.

Every stream (events' ``stream_ordering``, account data, receipts, to-device, device lists,
presence) hands out positions to writers and tells readers a position up to which they may read
(/sync tokens, /messages ``end``, the push evaluator's walk). Writers commit in any order, so
the newest committed position is not what a reader may use: with A holding 10 and B holding 11,
B may commit first, and a reader that took 11 would skip A's row for good. Readers use
:func:`persisted_up_to` instead: the highest P such that every position <= P is committed or
abandoned (its transaction rolled back or died).

**SQLite** (one process, one writer at a time): a stream is a counter row in
``stream_positions``, advanced inside the write transaction. Only one write transaction runs at
a time, so the committed counter is the persisted-up-to position.

**PostgreSQL** (any number of processes): a SEQUENCE per stream (``stream_ids_<stream>``), whose
``nextval`` takes no lock and is not rolled back (gaps are fine), and a table of writers in
flight, ``stream_positions_in_flight``. A write transaction's first allocation of a stream:

1. reads its own transaction ID (``txid_current()``);
2. registers itself, committed at once on a side connection: a row with that transaction ID
   and ``floor``, the sequence's value at that moment;
3. only then takes its positions with ``nextval`` there, recording the first (``position``)
   (2 and 3 are one call of the procedure ``stream_ids_register_and_take``, which commits
   between them);
4. deletes its row inside the write transaction (``call_before_commit``), so the commit that
   makes its rows visible also removes it. More allocations in the same transaction take
   ``nextval`` on the transaction's own connection: the row already bounds them.

A reader reads the sequence's value ``L`` first, then, in a later statement (a later snapshot),
the in-flight rows it can see, leaving out those whose transaction PostgreSQL reports aborted
(``txid_status``); persisted up to = min(L, each remaining row's ``position - 1``, or its
``floor`` while it has no position).

Why this is right: take a position Q <= the answer whose writer W has not committed visibly
when the answer is given (if W never commits, Q is abandoned). If W's row was visible to the
reader's snapshot, W had not committed as of that snapshot and was not aborted, so its row
counted: the answer is <= ``position - 1`` < Q, or <= ``floor`` < Q (Q was taken after the
registration, so above the value seen then). If W's row was not visible, W registered after
that snapshot, which came after ``L`` was read; W took Q after registering, so Q > L >= the
answer. Either way Q > the answer: a reader never skips a row committed later with a lower
position. (A row whose writer ``txid_status`` already calls committed still counts: PostgreSQL
marks a commit before new snapshots see it, and that row disappears with the writer's commit
anyway.) A writer that dies or rolls back leaves a row whose transaction is reported
``aborted`` (``NULL`` once so old its status is gone): readers ignore it at once, so nothing
freezes, and :func:`sweep` deletes such rows (readers call it at most once a minute per
process). No clock and no lease is involved. This needs READ COMMITTED (the default), where
each statement takes a fresh snapshot.

Per-key order: positions increase in commit order only among writers that a lock serialises
before they allocate. Events allocate after taking the room's row lock; streams whose rows are
overwritten in place (account data, receipts, presence) or chained (device lists' ``prev_id``)
pass ``order_key`` and take a transaction-scoped advisory lock on it first, so two writers of
one user's account data take their positions in the order they commit.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field

from homeserver.storage.database import Database, Transaction

EVENTS_STREAM = "events"
ACCOUNT_DATA_STREAM = "account_data"
RECEIPTS_STREAM = "receipts"
PRESENCE_STREAM = "presence"
TO_DEVICE_STREAM = "to_device"
DEVICE_LISTS_STREAM = "device_lists"

#: every allocated stream; its PostgreSQL sequence is ``stream_ids_<name>``.
STREAMS = frozenset(
    {
        EVENTS_STREAM,
        ACCOUNT_DATA_STREAM,
        RECEIPTS_STREAM,
        PRESENCE_STREAM,
        TO_DEVICE_STREAM,
        DEVICE_LISTS_STREAM,
    }
)

logger = logging.getLogger(__name__)

#: recorded with each in-flight row, for an operator reading the table.
INSTANCE = f"{socket.gethostname()}:{os.getpid()}"

_SWEEP_EVERY_SECONDS = 60.0
#: an in-flight row counts unless its writer is known to have aborted (NULL: too old to know,
#: long finished).
_COUNTS = "COALESCE(txid_status(xid), 'aborted') <> 'aborted'"
_last_sweep = 0.0


def _sequence(stream: str) -> str:
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}")
    return f"stream_ids_{stream}"


def _sequence_value(sequence: str) -> str:
    """SQL for the sequence's last handed-out value (one less before its first nextval)."""
    return f"SELECT last_value - CASE WHEN is_called THEN 0 ELSE 1 END FROM {sequence}"


def order_lock_key(stream: str, key: str) -> int:
    """A signed 64-bit advisory-lock key for ``key`` within ``stream`` (collisions only make
    two unrelated writers wait for each other)."""
    digest = hashlib.blake2b(f"{stream}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(slots=True)
class _InFlight:
    """The in-flight rows this transaction registered (stream → row id)."""

    xid: int = 0
    rows: dict[str, int] = field(default_factory=dict)


async def allocate_txn(
    txn: Transaction, stream: str, count: int = 1, *, order_key: str | None = None
) -> list[int]:
    """``count`` new positions of ``stream`` for the caller's write transaction, ascending.

    ``order_key``: writers passing the same key take their positions in commit order (see the
    module docstring); events rely on the room lock the caller already holds instead."""
    if count < 1:
        raise ValueError("count must be positive")
    sequence = _sequence(stream)
    started = time.monotonic()
    if txn.engine != "postgres":
        top = await txn.fetchval(
            "UPDATE stream_positions SET position = position + ? WHERE stream_name = ?"
            " RETURNING position",
            count,
            stream,
        )
        if top is None:
            raise RuntimeError(f"stream {stream!r} has no counter row")
        txn.observe_lock_wait(f"stream_id:{stream}", time.monotonic() - started)
        return list(range(int(top) - count + 1, int(top) + 1))
    if order_key is not None:
        await txn.advisory_lock(order_lock_key(stream, order_key))
        txn.observe_lock_wait(f"stream_key:{stream}", time.monotonic() - started)
        started = time.monotonic()
    in_flight = txn.context.setdefault(_InFlight, _InFlight)
    if stream in in_flight.rows:
        # Already registered by this transaction: its row's position bounds anything later.
        rows = await txn.fetchall(
            f"SELECT nextval('{sequence}') FROM generate_series(1, ?::int)", count
        )
        positions = sorted(int(r[0]) for r in rows)
    else:
        positions = await _register_and_take(txn, in_flight, stream, sequence, count)
    txn.observe_lock_wait(f"stream_id:{stream}", time.monotonic() - started)
    return positions


async def _register_and_take(
    txn: Transaction, in_flight: _InFlight, stream: str, sequence: str, count: int
) -> list[int]:
    if not in_flight.rows:
        in_flight.xid = int(await txn.fetchval("SELECT txid_current()"))
        txn.call_before_commit(lambda: _finish_txn(txn, in_flight))
    # One round trip on the side connection: the procedure (migration 025) commits the
    # registration, then takes the positions and records the first.
    rows = await txn.fetchall_autocommit(
        "CALL stream_ids_register_and_take(?, ?, ?, ?, ?, ?, NULL, NULL)",
        stream,
        sequence,
        in_flight.xid,
        INSTANCE,
        int(time.time() * 1000),
        count,
    )
    row_id, taken = rows[0]
    in_flight.rows[stream] = int(row_id)
    return [int(p) for p in taken]


async def _finish_txn(txn: Transaction, in_flight: _InFlight) -> None:
    ids = sorted(in_flight.rows.values())
    await txn.execute(
        "DELETE FROM stream_positions_in_flight WHERE id IN (" + ", ".join("?" * len(ids)) + ")",
        *ids,
    )
    in_flight.rows.clear()


async def persisted_up_to(db: Database, stream: str) -> int:
    """The highest position P of ``stream`` such that every position <= P is committed or
    abandoned: what a reader may hand out (0 for an empty stream)."""
    sequence = _sequence(stream)
    if db.engine != "postgres":
        # One row by key: read in place (a reader thread's hop costs more than the read).
        value = await db.indexed.fetchval(
            "SELECT position FROM stream_positions WHERE stream_name = ?", stream
        )
        return int(value or 0)
    # The sequence first, the writers in flight in a later statement (see the module docstring).
    top = int(await db.fetchval(_sequence_value(sequence)))
    bound = await db.fetchval(
        "SELECT MIN(COALESCE(position - 1, floor)) FROM stream_positions_in_flight"
        f" WHERE stream = ? AND {_COUNTS}",
        stream,
    )
    await _maybe_sweep(db)
    return top if bound is None else min(top, int(bound))


async def persisted_up_to_all(db: Database) -> dict[str, int]:
    """:func:`persisted_up_to` of every stream in :data:`STREAMS`, in two statements (one on
    SQLite) rather than two per stream: what a /sync token needs."""
    if db.engine != "postgres":
        rows = await db.fetchall("SELECT stream_name, position FROM stream_positions")
        found = {str(name): int(position or 0) for name, position in rows}
        return {stream: found.get(stream, 0) for stream in STREAMS}
    ordered = sorted(STREAMS)
    tops = await db.fetchall(
        " UNION ALL ".join(
            f"SELECT '{stream}', ({_sequence_value(_sequence(stream))})" for stream in ordered
        )
    )
    result = {str(stream): int(top) for stream, top in tops}
    bounds = await db.fetchall(
        "SELECT stream, MIN(COALESCE(position - 1, floor)) FROM stream_positions_in_flight"
        f" WHERE {_COUNTS} GROUP BY stream"
    )
    for stream, bound in bounds:
        if stream in result:
            result[stream] = min(result[stream], int(bound))
    await _maybe_sweep(db)
    return result


async def sweep(db: Database) -> int:
    """Delete in-flight rows left by writers that rolled back or died; how many went. (Readers
    already ignore them: this only keeps the table small.) Runs on the side connection, so it
    may be called from inside a transaction's task."""
    if db.engine != "postgres":
        return 0
    # A committed writer deletes its own row in its commit; one still there a minute later
    # can only be a left-over (a bug), and must not hold the stream back for ever.
    rows = await db.fetchall_autocommit(
        f"DELETE FROM stream_positions_in_flight WHERE NOT ({_COUNTS})"
        " OR (txid_status(xid) = 'committed' AND started < ?) RETURNING id",
        int(time.time() * 1000) - 60_000,
    )
    return len(rows)


async def _maybe_sweep(db: Database) -> None:
    global _last_sweep
    now = time.monotonic()
    if now - _last_sweep < _SWEEP_EVERY_SECONDS:
        return
    _last_sweep = now
    try:
        await sweep(db)
    except Exception:  # housekeeping: a failure must not fail the read that triggered it
        logger.exception("sweeping stream_positions_in_flight failed")
