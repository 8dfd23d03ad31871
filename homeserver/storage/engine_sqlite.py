"""The SQLite engine: WAL, one writer connection serialised by an asyncio lock, a few readers."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from homeserver.private_files import create_private_file, ensure_private_dir, tighten
from homeserver.storage.database import Database, Row, Transaction, in_transaction
from homeserver.storage.process_lock import ProcessLock


class SqliteTransaction(Transaction):
    engine = "sqlite"

    def __init__(self, name: str, conn: aiosqlite.Connection) -> None:
        super().__init__(name)
        self._conn = conn

    # Each aiosqlite call is a hop to its thread and back, the main cost of a small statement:
    # one hop per statement (the finished cursors need no explicit close).
    async def execute(self, sql: str, *args: Any) -> int:
        cursor = await self._conn.execute(sql, args)
        return max(cursor.rowcount, 0)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, [tuple(r) for r in rows])

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        return [tuple(row) for row in await self._conn.execute_fetchall(sql, args)]

    async def lock_row(self, table: str, key_column: str, key: Any) -> bool:
        row = await self.fetchone(f"SELECT 1 FROM {table} WHERE {key_column} = ?", key)
        return row is not None

    async def advisory_lock(self, key: int) -> None:
        return None


SQLITE_TYPES = {
    "id_pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "bytes": "BLOB",
}


class SqliteDatabase(Database):
    """One writer connection behind an asyncio lock (SQLite allows one writer anyway; queueing
    in-process avoids busy-waiting) and a few read connections that WAL lets run alongside it."""

    engine = "sqlite"

    def __init__(self, path: str, readers: int, *, exclusive: bool = False) -> None:
        super().__init__()
        self.path = path
        self.sql_types = SQLITE_TYPES
        self._memory = path == ":memory:"
        self._reader_count = 0 if self._memory else max(readers, 0)
        self._writer: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []
        self._exclusive = exclusive and not self._memory
        self._process_lock: ProcessLock | None = None

    async def _connect(self, *, read_only: bool) -> aiosqlite.Connection:
        # isolation_level=None: autocommit; we issue BEGIN/COMMIT ourselves so that the Python
        # sqlite3 module never opens or commits a transaction behind our back.
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        await conn.execute("PRAGMA busy_timeout = 10000")
        await conn.execute("PRAGMA foreign_keys = ON")
        if not self._memory:
            await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        if read_only:
            await conn.execute("PRAGMA query_only = ON")
        return conn

    async def _open(self) -> None:
        if not self._memory:
            # Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the
            # database file's mode, and would otherwise create all three per the umask.
            database = Path(self.path)
            ensure_private_dir(database.parent)
            if self._exclusive:
                # Before SQLite opens the file: a refused second process changes nothing.
                self._process_lock = ProcessLock.acquire(database)
            create_private_file(database)
            for companion in ("-wal", "-shm", "-journal"):
                tighten(Path(f"{self.path}{companion}"))
        self._writer = await self._connect(read_only=False)
        for _ in range(self._reader_count):
            conn = await self._connect(read_only=True)
            self._all_readers.append(conn)
            self._readers.put_nowait(conn)

    async def close(self) -> None:
        for conn in self._all_readers:
            await conn.close()
        self._all_readers.clear()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        if self._process_lock is not None:
            self._process_lock.release()
            self._process_lock = None

    @asynccontextmanager
    async def _engine_transaction(self, name: str, read_only: bool) -> AsyncIterator[Transaction]:
        if read_only and self._reader_count:
            conn = await self._readers.get()
            try:
                # DEFERRED: a read snapshot that starts at the first SELECT and never blocks.
                await conn.execute("BEGIN DEFERRED")
                try:
                    yield SqliteTransaction(name, conn)
                finally:
                    await conn.execute("ROLLBACK")
            finally:
                self._readers.put_nowait(conn)
            return
        assert self._writer is not None, "database is closed"
        async with self._write_lock:
            # IMMEDIATE takes the write lock now, so a transaction never fails half-way through
            # when upgrading a read lock (another process holding the file).
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield SqliteTransaction(name, self._writer)
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            try:
                await self._writer.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (e.g. busy beyond the timeout) leaves the transaction open;
                # close it so the next BEGIN on this connection works.
                if self._writer.in_transaction:
                    await self._writer.execute("ROLLBACK")
                raise

    def is_unavailable_error(self, error: Exception) -> bool:
        # Another process held the file beyond busy_timeout, or the disk went away.
        return isinstance(error, sqlite3.OperationalError) and str(error).startswith(
            ("database is locked", "disk I/O error", "unable to open database file")
        )

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        if not self._reader_count:
            # Without readers (":memory:") reads share the writer; from inside a transaction
            # that would wait on our own lock forever.
            if in_transaction() is not None:
                raise RuntimeError("use txn.fetch* inside a transaction on an in-memory database")
            async with self._write_lock:
                assert self._writer is not None, "database is closed"
                return await SqliteTransaction("read", self._writer).fetchall(sql, *args)
        conn = await self._readers.get()
        try:
            return await SqliteTransaction("read", conn).fetchall(sql, *args)
        finally:
            self._readers.put_nowait(conn)
