"""Counters of the non-event streams (account data, receipts, presence) behind /sync tokens.

A writer takes the next position inside its own transaction; the counter's row stays locked
until commit (PostgreSQL row lock; SQLite's single writer), so positions become visible in
order and a reader that saw position P has already seen every row stamped with P or less.
"""

from __future__ import annotations

from homeserver.storage.database import Database, Transaction

ACCOUNT_DATA_STREAM = "account_data"
RECEIPTS_STREAM = "receipts"
PRESENCE_STREAM = "presence"


async def advance_stream_txn(txn: Transaction, stream: str) -> int:
    """The next position of ``stream``, reserved for the caller's transaction."""
    position = await txn.fetchval(
        "UPDATE stream_positions SET position = position + 1 WHERE stream_name = ?"
        " RETURNING position",
        stream,
    )
    if position is None:
        raise RuntimeError(f"unknown stream {stream!r}")
    return int(position)


async def get_stream_position(db: Database, stream: str) -> int:
    """The newest committed position of ``stream``."""
    position = await db.indexed.fetchval(
        "SELECT position FROM stream_positions WHERE stream_name = ?", stream
    )
    return int(position or 0)
