"""The SQLite engine: WAL, one writer connection serialised by an asyncio lock, a few readers.

The writer is a plain ``sqlite3`` connection whose statements run on the event loop's own thread
(``WriterTransaction``): a write transaction's statements are small and the database is local, so
running them in place costs a few microseconds each, where handing each to a worker thread and
back (aiosqlite) cost 50–300 µs, most of it waiting for the GIL at concurrency (issue 18,
docs/performance.md). What may block longer stays off the loop: ``BEGIN IMMEDIATE`` when another
process holds the write lock (it then waits ``busy_timeout`` on a worker thread), and WAL
checkpoints (run on a connection of their own, on a worker thread, every
``CHECKPOINT_EVERY_PAGES`` written pages, instead of SQLite's automatic checkpoint inside COMMIT).
Readers stay on aiosqlite: a read outside a transaction may be large and runs beside the loop;
only ``db.indexed`` reads (lookups by key) run in place, on a read-only connection of their own.

Group commit (``run_in_transaction(..., shared_commit=True)``): transactions that reach the
writer in the same turn of the event loop run one after another inside one SQLite transaction
and share its COMMIT, which writes each B-tree page they touched once (the WAL frames of a
createRoom are most of its COMMIT) instead of once per transaction. No savepoints: a savepoint
journals every page it touches and cost more than the frames it saved (docs/performance.md).
Instead, when any member raises, the whole group rolls back and every member runs again in a
transaction of its own, so a failure is still that transaction's alone."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from homeserver.logging import context as log_context
from homeserver.private_files import create_private_file, ensure_private_dir, tighten
from homeserver.storage.database import (
    Database,
    Row,
    Transaction,
    TransactionStats,
    _in_transaction,
    _Reads,
    in_transaction,
)
from homeserver.storage.process_lock import ProcessLock

logger = logging.getLogger(__name__)

#: how long a statement waits for another process's lock (ms), as before on every connection.
BUSY_TIMEOUT_MS = 10000
#: run a passive WAL checkpoint once about this many pages went into the WAL (SQLite's default
#: automatic checkpoint is 1,000 pages, run inside the COMMIT that crosses it).
CHECKPOINT_EVERY_PAGES = 1000
#: the WAL file's size kept when it starts again (a few checkpoints' worth of pages).
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
#: at most this many transactions share one COMMIT, so a steady stream of them never keeps
#: the writer from everyone else for long.
MAX_SHARED_COMMIT = 32

T = TypeVar("T")


class SqliteTransaction(Transaction):
    engine = "sqlite"

    def __init__(self, name: str, conn: aiosqlite.Connection) -> None:
        super().__init__(name)
        self._conn = conn

    # Each aiosqlite call is a hop to its thread and back, the main cost of a small statement:
    # one hop per statement (the finished cursors need no explicit close).
    async def execute(self, sql: str, *args: Any) -> int:
        self.statements += 1
        cursor = await self._conn.execute(sql, args)
        return max(cursor.rowcount, 0)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.statements += 1
        await self._conn.executemany(sql, [tuple(r) for r in rows])

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        self.statements += 1
        return [tuple(row) for row in await self._conn.execute_fetchall(sql, args)]

    async def lock_row(self, table: str, key_column: str, key: Any) -> bool:
        row = await self.fetchone(f"SELECT 1 FROM {table} WHERE {key_column} = ?", key)
        return row is not None

    async def advisory_lock(self, key: int) -> None:
        return None


class InPlaceReads(_Reads):
    """``db.indexed``: reads by key on a read-only connection, run on the loop's thread."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        cursor = self._conn.execute(sql, args)
        try:
            return cursor.fetchall()
        finally:
            cursor.close()


class WriterTransaction(Transaction):
    """A write transaction on the writer connection, each statement run in place on the event
    loop's thread (see the module docstring)."""

    engine = "sqlite"

    def __init__(self, name: str, conn: sqlite3.Connection) -> None:
        super().__init__(name)
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        self.statements += 1
        cursor = self._conn.execute(sql, args)
        rowcount = cursor.rowcount
        cursor.close()
        return max(rowcount, 0)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.statements += 1
        self._conn.executemany(sql, [tuple(r) for r in rows]).close()

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        self.statements += 1
        cursor = self._conn.execute(sql, args)
        try:
            return cursor.fetchall()
        finally:
            cursor.close()

    async def lock_row(self, table: str, key_column: str, key: Any) -> bool:
        row = await self.fetchone(f"SELECT 1 FROM {table} WHERE {key_column} = ?", key)
        return row is not None

    async def advisory_lock(self, key: int) -> None:
        return None


@dataclass(slots=True, eq=False)
class _Member:
    """One transaction of a commit group whose statements have all run."""

    name: str
    txn: WriterTransaction
    #: what the member's function returned.
    result: Any
    started: float
    #: the member's own context (request ID for log lines), for its after-commit callbacks.
    context: contextvars.Context
    #: True once committed, False if the group rolled back. The member's own future: a waiter
    #: that is cancelled cancels only it, never the group.
    outcome: asyncio.Future[bool]


@dataclass(slots=True, eq=False)
class _CommitGroup:
    """Transactions sharing one SQLite transaction and one COMMIT (see the module docstring)."""

    #: members run one at a time (a member's statements never interleave with another's).
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    members: list[_Member] = field(default_factory=list)
    #: members that joined and have not finished running their statements.
    running: int = 0
    joined: int = 0
    holds_write_lock: bool = False
    begun: bool = False
    #: a member raised (or BEGIN failed): the group rolls back, members run again alone.
    failed: bool = False
    settled: bool = False
    changes_before: int = 0

    @property
    def accepting(self) -> bool:
        return not (self.failed or self.settled) and self.joined < MAX_SHARED_COMMIT


SQLITE_TYPES = {
    "id_pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "bytes": "BLOB",
    # the position of a substring (a user ID's server part, migration 036)
    "str_find": "instr",
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
        self._writer: sqlite3.Connection | None = None
        #: the worker thread for what may block: BEGIN under contention, checkpoints.
        self._blocking: aiosqlite.Connection | None = None
        self._pages_since_checkpoint = 0
        self._checkpoint: asyncio.Task[None] | None = None
        self._in_place: InPlaceReads | None = None
        self._in_place_conn: sqlite3.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []
        self._exclusive = exclusive and not self._memory
        self._process_lock: ProcessLock | None = None
        #: the commit group new shared-commit transactions join, while it accepts them.
        self._group: _CommitGroup | None = None
        #: COMMITs shared by more than one transaction, and the transactions in them.
        self.shared_commits = 0
        self.shared_commit_members = 0

    async def _connect(self, *, read_only: bool) -> aiosqlite.Connection:
        # isolation_level=None: autocommit; we issue BEGIN/COMMIT ourselves so that the Python
        # sqlite3 module never opens or commits a transaction behind our back.
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA foreign_keys = ON")
        if not self._memory:
            await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        if read_only:
            await conn.execute("PRAGMA query_only = ON")
        return conn

    def _connect_writer(self) -> sqlite3.Connection:
        # check_same_thread=False: BEGIN under contention runs on a worker thread (while the
        # write lock keeps every other use away).
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if not self._memory:
            conn.execute("PRAGMA journal_mode = WAL")
            # Checkpoints run off the loop (``_after_commit``), not inside our COMMIT.
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            # A WAL a burst of writes made big is cut back to this when it starts again.
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
        conn.execute("PRAGMA synchronous = NORMAL")
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
        self._writer = self._connect_writer()
        if not self._memory:
            self._blocking = await self._connect(read_only=False)
            self._in_place_conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False
            )
            self._in_place_conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._in_place_conn.execute("PRAGMA query_only = ON")
            self._in_place = InPlaceReads(self._in_place_conn)
        for _ in range(self._reader_count):
            conn = await self._connect(read_only=True)
            self._all_readers.append(conn)
            self._readers.put_nowait(conn)

    async def close(self) -> None:
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
            self._checkpoint = None
        for conn in self._all_readers:
            await conn.close()
        self._all_readers.clear()
        if self._blocking is not None:
            await self._blocking.close()
            self._blocking = None
        if self._in_place_conn is not None:
            self._in_place_conn.close()
            self._in_place_conn = self._in_place = None
        if self._writer is not None:
            async with self._write_lock:
                self._writer.close()
            self._writer = None
        if self._process_lock is not None:
            self._process_lock.release()
            self._process_lock = None

    @property
    def indexed(self) -> _Reads:
        # In memory there is no second connection to the same data: reads share the writer.
        return self if self._in_place is None else self._in_place

    async def _begin(self, writer: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE in place when the lock is free (the usual case: one process), else
        wait for it on a worker thread, so another process's long transaction never stalls the
        loop."""
        writer.execute("PRAGMA busy_timeout = 0")
        try:
            writer.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as e:
            if not str(e).startswith("database is locked"):
                raise
        finally:
            writer.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        begin = asyncio.get_running_loop().run_in_executor(None, writer.execute, "BEGIN IMMEDIATE")
        try:
            await asyncio.shield(begin)
        except asyncio.CancelledError:
            # The BEGIN goes on in its thread and may still succeed: wait for it (the write
            # lock is still ours) and undo it, so the next transaction finds the connection
            # idle.
            await asyncio.wait([begin])
            if writer.in_transaction:
                writer.execute("ROLLBACK")
            raise

    def _after_commit(self, writer: sqlite3.Connection, changes_before: int) -> None:
        """Count what went into the WAL and start a passive checkpoint off the loop once about
        ``CHECKPOINT_EVERY_PAGES`` pages did (changed rows stand in for pages: cheap, and a
        row rarely fills a page)."""
        if self._blocking is None:
            return
        self._pages_since_checkpoint += max(writer.total_changes - changes_before, 1)
        if self._pages_since_checkpoint < CHECKPOINT_EVERY_PAGES or self._checkpoint is not None:
            return
        self._pages_since_checkpoint = 0
        self._checkpoint = asyncio.get_running_loop().create_task(self._run_checkpoint())

    async def _run_checkpoint(self) -> None:
        """Copy the WAL into the database file in two passes, both on the worker thread.

        SQLite starts the WAL again from its beginning only when a write transaction begins
        with every frame already copied. The first pass copies the bulk while transactions go
        on, so under steady writing it always ends behind them: the WAL then grew for ever
        (hundreds of MB in a minute of benchmark) and every frame extended the file, which
        costs twice an overwrite. The second pass holds our writers off while it copies what
        came in meanwhile (a few transactions' pages), so the next transaction restarts the
        WAL."""
        try:
            await self._checkpoint_pass()
            async with self._write_lock:
                await self._checkpoint_pass()
        except Exception:  # a checkpoint is housekeeping; the next one catches up
            logger.exception("WAL checkpoint failed")
        finally:
            self._checkpoint = None

    async def _checkpoint_pass(self) -> None:
        assert self._blocking is not None
        cursor = await self._blocking.execute("PRAGMA wal_checkpoint(PASSIVE)")
        await cursor.close()

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
        async with self._write_lock:
            writer = self._writer
            assert writer is not None, "database is closed"
            # IMMEDIATE takes the write lock now, so a transaction never fails half-way through
            # when upgrading a read lock (another process holding the file).
            await self._begin(writer)
            changes_before = writer.total_changes
            try:
                yield WriterTransaction(name, writer)
            except BaseException:
                if writer.in_transaction:
                    writer.execute("ROLLBACK")
                raise
            try:
                writer.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (e.g. busy beyond the timeout) leaves the transaction open;
                # close it so the next BEGIN on this connection works.
                if writer.in_transaction:
                    writer.execute("ROLLBACK")
                raise
            self._after_commit(writer, changes_before)

    async def run_in_transaction(
        self,
        name: str,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        read_only: bool = False,
        shared_commit: bool = False,
    ) -> T:
        if not shared_commit or read_only:
            return await super().run_in_transaction(name, fn, *args, read_only=read_only)
        outer = _in_transaction.get()
        if outer is not None:
            raise RuntimeError(f"transaction {name!r} opened inside transaction {outer!r}")
        group = self._group
        if group is None or not group.accepting:
            group = self._group = _CommitGroup()
        member = await self._run_member(group, name, fn, args)
        if member is not None and await member.outcome:
            return member.result  # type: ignore[no-any-return]
        # Rolled back with its group (this member or another raised, or BEGIN or COMMIT
        # failed): alone this time, so its outcome is its own.
        return await super().run_in_transaction(name, fn, *args)

    async def _run_member(
        self,
        group: _CommitGroup,
        name: str,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
    ) -> _Member | None:
        """Run ``fn`` as the group's next member; None if the group failed before it or it
        failed after others' writes (it then runs again alone). The first member's error, and
        any BaseException (cancellation), fail the group and propagate."""
        group.joined += 1
        group.running += 1
        try:
            async with group.turn:
                if not group.failed and not group.begun:
                    try:
                        await self._begin_group(group)
                    except Exception:
                        # Each member runs again alone and meets (and reports) the error itself.
                        group.failed = True
                if group.failed:
                    return None
                first = not group.members
                try:
                    return await self._execute_member(group, name, fn, args)
                except Exception as e:
                    group.failed = True  # its writes are in the group's transaction
                    if not first:
                        return None  # it saw the others' writes: its error may be theirs
                    # Nothing ran before it: what it met, it would have met alone.
                    self.stats.setdefault(name, TransactionStats()).failures += 1
                    if self.is_unavailable_error(e):
                        raise self._unavailable(name, e) from e
                    raise
                except BaseException:
                    group.failed = True
                    raise
        finally:
            group.running -= 1
            if group.running == 0:
                # A turn of the loop later: whoever reaches the writer meanwhile joins first.
                asyncio.get_running_loop().call_soon(self._settle, group)

    async def _begin_group(self, group: _CommitGroup) -> None:
        writer = self._writer
        assert writer is not None, "database is closed"
        if not group.holds_write_lock:
            await self._write_lock.acquire()
            group.holds_write_lock = True
        # A member cancelled here leaves the lock with the group and BEGIN to the next one.
        await self._begin(writer)
        group.begun = True
        group.changes_before = writer.total_changes

    async def _execute_member(
        self,
        group: _CommitGroup,
        name: str,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
    ) -> _Member:
        assert self._writer is not None, "database is closed"
        txn = WriterTransaction(name, self._writer)
        txn.database = self
        token = _in_transaction.set(name)
        log_token = log_context.transaction.set(name)
        started = time.monotonic()
        try:
            result = await fn(txn, *args)
            await txn._run_before_commit()
        finally:
            log_context.transaction.reset(log_token)
            _in_transaction.reset(token)
        member = _Member(
            name,
            txn,
            result,
            started,
            contextvars.copy_context(),
            asyncio.get_running_loop().create_future(),
        )
        group.members.append(member)
        return member

    def _settle(self, group: _CommitGroup) -> None:
        """Commit (or roll back) ``group`` once none of its members is still running."""
        if group.running or group.settled:
            return
        group.settled = True
        if self._group is group:
            self._group = None
        committed = False
        try:
            committed = self._end_group(group)
        finally:
            if group.holds_write_lock:
                self._write_lock.release()
            now = time.monotonic()
            shared = len(group.members) > 1
            for member in group.members:
                if committed:
                    stats = self.stats.setdefault(member.name, TransactionStats())
                    self._record(member.name, stats, now - member.started, member.txn)
                    stats.shared_commits += shared
                    member.context.run(member.txn._run_after_commit)
                if not member.outcome.done():
                    member.outcome.set_result(committed)

    def _end_group(self, group: _CommitGroup) -> bool:
        """COMMIT a group whose members all succeeded, else ROLLBACK; whether it committed."""
        writer = self._writer
        if not group.begun or writer is None:
            return False
        if not group.failed:
            try:
                writer.execute("COMMIT")
            except sqlite3.Error as e:
                # Each member runs again alone and meets (and reports) the error itself.
                logger.warning("shared COMMIT failed (%s); its transactions run alone", e)
            else:
                if len(group.members) > 1:
                    self.shared_commits += 1
                    self.shared_commit_members += len(group.members)
                try:
                    self._after_commit(writer, group.changes_before)
                except Exception:  # housekeeping: the group is committed whatever it meets
                    logger.exception("after-commit housekeeping of a commit group failed")
                return True
        try:
            if writer.in_transaction:
                writer.execute("ROLLBACK")
        except sqlite3.Error:
            logger.exception("ROLLBACK of a commit group failed")
        return False

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
                return await WriterTransaction("read", self._writer).fetchall(sql, *args)
        conn = await self._readers.get()
        try:
            return await SqliteTransaction("read", conn).fetchall(sql, *args)
        finally:
            self._readers.put_nowait(conn)
