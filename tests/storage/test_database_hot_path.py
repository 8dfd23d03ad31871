"""Issue 18's storage hot path: statements counted per transaction name, ``db.indexed`` reads
(in place on SQLite) seeing committed data only, and the SQLite writer never stalling the event
loop on what may block (another process's write lock, WAL checkpoints)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from homeserver.storage import Database, engine_sqlite
from homeserver.storage.factory import open_sqlite
from homeserver.storage.migrate import apply_migrations

INSERT_USER = "INSERT INTO users (user_id, password_hash, admin, created_ts) VALUES (?, ?, ?, ?)"


@asynccontextmanager
async def _migrated_sqlite(tmp_path: Path) -> AsyncIterator[tuple[Database, Path]]:
    """A migrated SQLite database and its WAL file."""
    path = tmp_path / "homeserver.db"
    db = await open_sqlite(path)
    try:
        await apply_migrations(db)
        yield db, Path(f"{path}-wal")
    finally:
        await db.close()


async def test_statements_counted_per_transaction_name(database: Database) -> None:
    async with database.transaction("three_statements") as txn:
        await txn.execute(INSERT_USER, "@a:x", None, False, 1)
        await txn.executemany(INSERT_USER, [("@b:x", None, False, 2), ("@c:x", None, False, 3)])
        assert await txn.fetchval("SELECT COUNT(*) FROM users") == 3
    async with database.transaction("three_statements") as txn:
        await txn.fetchall("SELECT user_id FROM users")
    stats = database.stats["three_statements"]
    # An executemany is one statement, whatever its rows.
    assert (stats.count, stats.statements) == (2, 4)


async def test_indexed_reads_see_committed_data_only(database: Database) -> None:
    sql = "SELECT created_ts FROM users WHERE user_id = ?"
    assert await database.indexed.fetchone(sql, "@a:x") is None
    async with database.transaction("insert_user") as txn:
        await txn.execute(INSERT_USER, "@a:x", None, False, 7)
        # The transaction's own write is not committed yet: a read outside it does not see it.
        assert await database.indexed.fetchval(sql, "@a:x") is None
    assert await database.indexed.fetchval(sql, "@a:x") == 7
    assert await database.indexed.fetchall(sql, "@b:x") == []
    with pytest.raises((sqlite3.OperationalError, asyncpg.PostgresError)):
        await database.indexed.fetchall("SELECT nope FROM users")


async def test_sqlite_in_place_reads_are_read_only(tmp_path: Path) -> None:
    db = await open_sqlite(tmp_path / "homeserver.db")
    try:
        await apply_migrations(db)
        with pytest.raises(sqlite3.OperationalError):
            await db.indexed.fetchall(INSERT_USER, "@a:x", None, 0, 1)
        assert await db.fetchall("SELECT user_id FROM users") == []
    finally:
        await db.close()


async def _ticks_while(awaitable: asyncio.Future[object] | asyncio.Task[object]) -> int:
    """How often a 10 ms ticker ran on the loop while ``awaitable`` was pending."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        await awaitable
    finally:
        task.cancel()
    return ticks


async def test_sqlite_writer_waits_for_another_process_off_the_loop(tmp_path: Path) -> None:
    db = await open_sqlite(tmp_path / "homeserver.db")
    try:
        await apply_migrations(db)
        # Another process holds the write lock for 0.4 s.
        other = sqlite3.connect(
            tmp_path / "homeserver.db", isolation_level=None, check_same_thread=False
        )
        other.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.4, lambda: other.execute("ROLLBACK"))
        release.start()

        async def write() -> object:
            async with db.transaction("waits") as txn:
                await txn.execute(INSERT_USER, "@a:x", None, False, 1)
            return None

        ticks = await _ticks_while(asyncio.ensure_future(write()))
        release.join()
        other.close()
        # The loop kept running while the transaction waited for the lock (a BEGIN on the
        # loop's thread would have blocked it: no tick at all).
        assert ticks >= 10
        assert await db.fetchval("SELECT COUNT(*) FROM users") == 1
    finally:
        await db.close()


async def test_sqlite_wal_checkpointed_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_sqlite, "CHECKPOINT_EVERY_PAGES", 20)
    async with _migrated_sqlite(tmp_path) as (db, wal):
        after_migrations = wal.stat().st_size
        for i in range(300):
            async with db.transaction("one_user") as txn:
                await txn.execute(INSERT_USER, f"@u{i}:x", None, False, i)
            checkpoint = getattr(db, "_checkpoint", None)
            if checkpoint is not None:
                await checkpoint
        # Checkpointed every ~20 changes, the WAL is written from its start again and again
        # instead of growing by every transaction's pages (300 × ≥ 2 pages of 4 KiB: 2.4 MB;
        # SQLite's own automatic checkpoint is off on the writer).
        assert wal.stat().st_size < after_migrations + 200_000
        assert await db.indexed.fetchval("SELECT COUNT(*) FROM users") == 300


async def test_sqlite_wal_starts_again_while_writes_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writers that never wait for the checkpoint: each one runs while the previous one's
    checkpoint copies, so a single pass always ends behind them and the WAL is never written
    from its start again (it grew by every transaction's pages)."""
    monkeypatch.setattr(engine_sqlite, "CHECKPOINT_EVERY_PAGES", 20)
    async with _migrated_sqlite(tmp_path) as (db, wal):
        after_migrations = wal.stat().st_size

        async def writer(first: int) -> None:
            for i in range(first, first + 1000):
                async with db.transaction("one_user") as txn:
                    await txn.execute(INSERT_USER, f"@u{i}:x", None, False, i)
                await asyncio.sleep(0)

        checkpoints_seen = 0

        async def count_checkpoints() -> None:
            nonlocal checkpoints_seen
            while True:
                checkpoint = getattr(db, "_checkpoint", None)
                if checkpoint is not None:
                    checkpoints_seen += 1
                    await asyncio.wait([checkpoint])
                await asyncio.sleep(0)

        counter = asyncio.create_task(count_checkpoints())
        await asyncio.gather(writer(0), writer(10_000))
        counter.cancel()
        assert checkpoints_seen >= 5
        # 2,000 transactions of ≥ 2 pages: ≥ 16 MB had the WAL only grown. What it reaches
        # instead is the pages written while one first pass copies (the worker thread waits
        # for the GIL the writers hold), a few MB at most.
        assert wal.stat().st_size < after_migrations + 6_000_000
        assert await db.indexed.fetchval("SELECT COUNT(*) FROM users") == 2000


async def test_sqlite_wal_cut_back_when_it_starts_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_sqlite, "WAL_SIZE_LIMIT_BYTES", 200_000)
    async with _migrated_sqlite(tmp_path) as (db, wal):
        # One burst: ~4 MB of pages in one transaction.
        async with db.transaction("burst") as txn:
            await txn.executemany(
                INSERT_USER, [(f"@{'x' * 200}{i}:x", None, False, i) for i in range(10_000)]
            )
        assert wal.stat().st_size > 2_000_000
        checkpoint = getattr(db, "_checkpoint", None)
        assert checkpoint is not None
        await checkpoint
        async with db.transaction("one_user") as txn:
            await txn.execute(INSERT_USER, "@after:x", None, False, 1)
        # Started again from its beginning, and cut back to the limit at that commit.
        assert wal.stat().st_size <= 200_000


async def test_sqlite_writer_cancelled_while_waiting_leaves_the_connection_idle(
    tmp_path: Path,
) -> None:
    db = await open_sqlite(tmp_path / "homeserver.db")
    try:
        await apply_migrations(db)
        other = sqlite3.connect(
            tmp_path / "homeserver.db", isolation_level=None, check_same_thread=False
        )
        other.execute("BEGIN IMMEDIATE")

        async def write(user_id: str) -> None:
            async with db.transaction("waits") as txn:
                await txn.execute(INSERT_USER, user_id, None, False, 1)

        waiting = asyncio.create_task(write("@cancelled:x"))
        await asyncio.sleep(0.2)
        waiting.cancel()
        await asyncio.sleep(0.1)
        other.execute("ROLLBACK")
        other.close()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # The BEGIN that went on in its thread was undone: the next transaction runs.
        await asyncio.wait_for(write("@next:x"), 10)
        rows = await db.fetchall("SELECT user_id FROM users")
        assert rows == [("@next:x",)]
    finally:
        await db.close()
