"""The non-event streams behind /sync tokens (account data, receipts, presence, to-device,
device lists): a writer's position and a reader's.

Positions are allocated by :mod:`homeserver.storage.stream_ids` (a sequence per stream on
PostgreSQL, a counter on SQLite) and read as the stream's persisted-up-to position, so a reader
that saw position P has seen every row that will ever be stamped with P or less.
``push_evaluated`` is not allocated: it is the push evaluator's own position in the events
stream, a plain row of ``stream_positions``.
"""

from __future__ import annotations

from homeserver.storage.database import Database, Transaction
from homeserver.storage.stream_ids import (
    ACCOUNT_DATA_STREAM,
    DEVICE_LISTS_STREAM,
    PRESENCE_STREAM,
    RECEIPTS_STREAM,
    STREAMS,
    TO_DEVICE_STREAM,
    allocate_txn,
    persisted_up_to,
)

__all__ = [
    "ACCOUNT_DATA_STREAM",
    "DEVICE_LISTS_STREAM",
    "PRESENCE_STREAM",
    "RECEIPTS_STREAM",
    "TO_DEVICE_STREAM",
    "advance_stream_txn",
    "get_stream_position",
]


async def advance_stream_txn(txn: Transaction, stream: str, *, order_key: str | None = None) -> int:
    """A new position of ``stream`` for the caller's transaction. Writers passing the same
    ``order_key`` (a row they overwrite, a chain they extend) take positions in commit order."""
    (position,) = await allocate_txn(txn, stream, order_key=order_key)
    return position


async def get_stream_position(db: Database, stream: str) -> int:
    """How far a reader may read ``stream`` (its persisted-up-to position)."""
    if stream in STREAMS:
        return await persisted_up_to(db, stream)
    position = await db.indexed.fetchval(
        "SELECT position FROM stream_positions WHERE stream_name = ?", stream
    )
    return int(position or 0)
