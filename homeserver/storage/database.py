"""One async ``Database`` over two engines: SQLite (aiosqlite) and PostgreSQL (asyncpg).

Store code writes portable SQL with ``?`` placeholders; the PostgreSQL engine rewrites them to
``$1..$n``. Everything that differs between the engines (placeholders, row locking, advisory
locks, column types in migrations) lives in the engine classes here, so the stores stay
engine-agnostic.

Transactions have a name, used for debug logs (with duration) and per-name counters that the
metrics endpoint can read later (``Database.stats``). Two ways to run one:

* ``async with db.transaction("name") as txn:`` — simple, but cannot be retried.
* ``await db.run_in_transaction("name", fn, *args)`` — ``fn(txn, *args)`` is re-run when
  PostgreSQL reports a serialization failure or a deadlock. Prefer it for writes that lock rows.

``db.fetchall``/``fetchone``/``fetchval`` read committed data on a connection of their own (on
SQLite a read connection, which WAL lets run beside the writer); inside a transaction read through
``txn`` to see its own writes. ``db.indexed.fetch*`` is for reads an index answers at once (a
lookup by key: an access token, an event by ID, a state group's rows): the same committed data,
but SQLite runs them in place on the event loop's thread, sparing the hop to a reader thread
that costs more than such a read (PostgreSQL: the same as ``db.fetch*``). Never use it for a
scan, a search or a read whose size a client decides.

The engines live in ``engine_sqlite.py`` and ``engine_postgres.py``; ``factory.py`` opens one.

Rows come back as plain tuples on both engines so that results compare and hash the same way.
Transactions must not be nested: on SQLite the inner one would wait for the writer lock that the
outer one holds, so a nested call raises instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from homeserver.logging import context as log_context
from homeserver.storage.errors import DatabaseUnavailable

logger = logging.getLogger(__name__)

Row = tuple[Any, ...]
T = TypeVar("T")

_in_transaction: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "homeserver_storage_in_transaction", default=None
)


@asynccontextmanager
async def _no_lock() -> AsyncIterator[None]:
    yield


def in_transaction() -> str | None:
    """The name of the transaction the current task is in, if any."""
    return _in_transaction.get()


#: PostgreSQL SQLSTATEs after which re-running the whole transaction is the right answer.
_RETRYABLE_PG_STATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
MAX_TRANSACTION_ATTEMPTS = 5


@dataclass(slots=True)
class TransactionStats:
    """Counters for one transaction name (read by metrics)."""

    count: int = 0
    failures: int = 0
    retries: int = 0
    total_seconds: float = 0.0
    #: SQL statements run in these transactions (an ``executemany`` counts once).
    statements: int = 0
    #: of ``count``, those that committed in a COMMIT shared with others (SQLite group commit).
    shared_commits: int = 0


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """Which engine to open and how (``app.py`` maps ``config.database`` onto this).

    ``engine``: ``"sqlite"`` (or ``"sqlite3"``) or ``"postgres"`` (or ``"postgresql"``)."""

    engine: str = "sqlite"
    #: SQLite: the database file (``":memory:"`` allowed, with no read pool).
    path: str = "homeserver.db"
    #: PostgreSQL: a libpq DSN.
    dsn: str = ""
    cp_min: int = 5
    cp_max: int = 10
    #: PostgreSQL: a schema to use (created if missing) instead of the default search_path.
    schema: str | None = None
    #: SQLite: read connections besides the writer.
    sqlite_readers: int = 3
    #: SQLite: refuse to open a database another process holds (``process_lock.py``); the
    #: server sets it, one-off commands and tests' second pools do not.
    exclusive: bool = False


def translate_placeholders(sql: str) -> str:
    """``?`` → ``$1..$n``, leaving ``?`` inside quoted strings and identifiers alone."""
    return _translate_cached(sql)


@functools.lru_cache(maxsize=2048)
def _translate_cached(sql: str) -> str:
    out: list[str] = []
    n = 0
    quote: str | None = None
    for ch in sql:
        if quote is not None:
            if ch == quote:
                quote = None
            out.append(ch)
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            n += 1
            out.append(f"${n}")
        else:
            out.append(ch)
    return "".join(out)


def in_chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size``: one ``IN (...)`` list each."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def placeholders(n: int) -> str:
    """``?, ?, ?`` for an ``IN (...)`` list of ``n`` values."""
    if n < 1:
        raise ValueError("an IN list needs at least one value")
    return ", ".join("?" * n)


class _Reads:
    """``fetchone``/``fetchval`` on top of an engine's ``fetchall`` (transactions and the
    database's reads outside a transaction share them)."""

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        raise NotImplementedError

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetchall(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchone(sql, *args)
        return row[0] if row else None


class TransactionContext:
    """Per-transaction memo of the stores. A store keeps its memo under the memo's own type
    (``txn.context.setdefault(StateGroupWrites, StateGroupWrites)``), so the slots are typed
    and this module needs to know none of the stores above it."""

    __slots__ = ("_slots",)

    def __init__(self) -> None:
        self._slots: dict[type, object] = {}

    def get(self, kind: type[T]) -> T | None:
        found = self._slots.get(kind)
        return found if isinstance(found, kind) else None

    def setdefault(self, kind: type[T], make: Callable[[], T]) -> T:
        found = self.get(kind)
        if found is None:
            found = self._slots[kind] = make()
        return found


class Transaction(_Reads):
    """An open transaction. Engine subclasses implement the four primitives."""

    #: the engine name, for the rare store code that must branch ("sqlite" | "postgres").
    engine: str = ""
    #: appended to a SELECT to lock the rows it reads until commit, in the order it reads
    #: them (PostgreSQL ``FOR UPDATE``; nothing on SQLite, whose single writer excludes all).
    lock_rows_clause: str = ""

    def __init__(self, name: str) -> None:
        self.name = name
        #: statements run so far; engines count each execute/executemany/fetch (one integer
        #: addition: cheap enough to stay on in production, summed into ``Database.stats``).
        self.statements = 0
        self._after_commit: list[Callable[[], None]] = []
        #: what stores remember while the transaction lasts, dropped with it.
        self.context = TransactionContext()
        self._before_commit: list[Callable[[], Awaitable[None]]] = []
        #: the database that opened it (set by :meth:`Database.transaction`).
        self.database: Database | None = None

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; returns the number of rows it changed (0 when unknown)."""
        raise NotImplementedError

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        raise NotImplementedError

    async def lock_row(self, table: str, key_column: str, key: Any) -> bool:
        """Lock one row until commit (PostgreSQL ``FOR UPDATE``); True if the row exists.

        On SQLite the single writer already serialises every write transaction, so this is only
        an existence check."""
        raise NotImplementedError

    async def advisory_lock(self, key: int) -> None:
        """Hold a database-wide lock named by ``key`` until commit (a no-op on SQLite, where
        the single writer already excludes everyone else)."""
        raise NotImplementedError

    async def fetchall_autocommit(self, sql: str, *args: Any) -> list[Row]:
        """Run a statement in a transaction of its own on another connection, committed when
        it returns, whatever becomes of this one (PostgreSQL only: the stream-ID allocator
        registers a writer there)."""
        assert self.database is not None, "transaction not opened by a Database"
        return await self.database.fetchall_autocommit(sql, *args)

    async def fetchval_autocommit(self, sql: str, *args: Any) -> Any:
        rows = await self.fetchall_autocommit(sql, *args)
        return rows[0][0] if rows else None

    def observe_lock_wait(self, lock: str, seconds: float) -> None:
        """Report time spent waiting for ``lock`` (a short, fixed name) to the metrics."""
        if self.database is not None:
            self.database.observe_lock_wait(lock, seconds)

    def call_before_commit(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Await ``callback`` just before the commit (buffered writes are flushed there)."""
        self._before_commit.append(callback)

    async def _run_before_commit(self) -> None:
        while self._before_commit:
            await self._before_commit.pop(0)()

    def call_after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the transaction has committed (cache fills, wake-ups).
        Not run on rollback."""
        self._after_commit.append(callback)

    def _run_after_commit(self) -> None:
        for callback in self._after_commit:
            try:
                callback()
            except Exception:
                # The data is committed; a failing hook must not turn that into an error.
                logger.exception("after-commit callback of %s failed", self.name)


class Database(_Reads):
    """The engine-independent interface. ``storage/factory.py`` opens one."""

    engine: str = ""
    #: substitutions applied to migration templates (``{id_pk}`` …), set per engine.
    sql_types: dict[str, str]

    def __init__(self) -> None:
        self.stats: dict[str, TransactionStats] = {}
        #: called with (name, seconds) after every transaction, committed or not (metrics).
        self.transaction_observers: list[Callable[[str, float], None]] = []
        #: called with (lock name, seconds waited) by writers that wait for a lock (metrics).
        self.lock_wait_observers: list[Callable[[str, float], None]] = []

    async def close(self) -> None:
        raise NotImplementedError

    @property
    def indexed(self) -> _Reads:
        """Reads an index answers at once (see the module docstring); by default, ours."""
        return self

    # --- database locks ----------------------------------------------------------------
    #: what makes one database's lock keys differ from another's on the same server (the
    #: PostgreSQL schema: advisory locks are per database, not per schema).
    lock_scope: str = ""

    def lock_key(self, namespace: str, name: str) -> int:
        """The 64-bit advisory-lock key of ``name`` in ``namespace`` (``"room"``, …)."""
        digest = hashlib.blake2b(
            f"{self.lock_scope}\0{namespace}\0{name}".encode(), digest_size=8
        ).digest()
        return int.from_bytes(digest, "big", signed=True)

    def session_lock(self, key: int, *, timeout: float) -> AbstractAsyncContextManager[None]:
        """Hold the database-wide lock ``key`` for the block, outside any transaction: for
        work that must not run twice at once across processes but waits on the network
        meanwhile (a transaction must not stay open that long). Raises :class:`LockTimeout`
        after ``timeout`` seconds of waiting. A no-op on SQLite (one process)."""
        return _no_lock()

    #: whether :meth:`is_alive` can tell that another process is dead (PostgreSQL: its
    #: liveness lock went with its connection). False on SQLite, where it cannot.
    tracks_liveness: bool = False

    async def claim_liveness(self, key: int) -> bool:
        """Hold ``key`` for as long as this process lives (its instance's liveness lock):
        other processes then know it is alive, and the moment it dies (its connection gone),
        that it is not. False if another live process holds it (the same instance name twice).
        Idempotent; call again after a lost connection. True on SQLite (one process)."""
        return True

    async def is_alive(self, key: int) -> bool:
        """Whether some live process holds the liveness lock ``key`` (this one included).
        On SQLite only this process can be alive, and it asks about others: False."""
        return False

    # --- transactions ------------------------------------------------------------------
    @asynccontextmanager
    async def transaction(
        self, name: str, *, read_only: bool = False
    ) -> AsyncIterator[Transaction]:
        """A named transaction; committed when the block ends, rolled back if it raises."""
        outer = _in_transaction.get()
        if outer is not None:
            raise RuntimeError(f"transaction {name!r} opened inside transaction {outer!r}")
        token = _in_transaction.set(name)
        log_token = log_context.transaction.set(name)
        stats = self.stats.setdefault(name, TransactionStats())
        start = time.monotonic()
        txn: Transaction | None = None
        try:
            async with self._engine_transaction(name, read_only) as txn:
                txn.database = self
                yield txn
                await txn._run_before_commit()
        except Exception as e:
            stats.failures += 1
            if self.is_unavailable_error(e):
                raise self._unavailable(name, e) from e
            raise
        except BaseException:
            stats.failures += 1
            raise
        finally:
            log_context.transaction.reset(log_token)
            _in_transaction.reset(token)
            self._record(name, stats, time.monotonic() - start, txn)
        assert txn is not None
        txn._run_after_commit()

    def _record(
        self, name: str, stats: TransactionStats, elapsed: float, txn: Transaction | None
    ) -> None:
        """Count one finished transaction and tell the observers (metrics)."""
        stats.count += 1
        stats.total_seconds += elapsed
        if txn is not None:
            stats.statements += txn.statements
        logger.debug("transaction %s took %.1f ms", name, elapsed * 1000)
        for observe in self.transaction_observers:
            try:
                observe(name, elapsed)
            except Exception:  # an observer never fails the transaction
                logger.exception("transaction observer %r failed", observe)

    async def run_in_transaction(
        self,
        name: str,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        read_only: bool = False,
        shared_commit: bool = False,
    ) -> T:
        """``await fn(txn, *args)`` in a transaction, re-run on retryable PostgreSQL errors.

        ``shared_commit``: the caller allows ``fn`` to share one COMMIT with other such
        transactions running at the same moment (SQLite's group commit, see
        ``engine_sqlite.py``): ``fn`` must then be safe to run again from the start, which it
        is when it only reads and writes through ``txn`` and leaves the rest to
        ``call_after_commit``. Every transaction still commits whole or not at all. Engines
        with concurrent writers (PostgreSQL) ignore it."""
        for attempt in range(1, MAX_TRANSACTION_ATTEMPTS + 1):
            try:
                async with self.transaction(name, read_only=read_only) as txn:
                    return await fn(txn, *args)
            except asyncpg.PostgresError as exc:
                if exc.sqlstate not in _RETRYABLE_PG_STATES or attempt == MAX_TRANSACTION_ATTEMPTS:
                    raise
                self.stats[name].retries += 1
                logger.info("transaction %s: %s, retrying (%d)", name, exc.sqlstate, attempt)
                # Back off a little so the two transactions that collided do not meet again.
                await asyncio.sleep(0.01 * attempt)
        raise AssertionError("unreachable")

    def _engine_transaction(
        self, name: str, read_only: bool
    ) -> AbstractAsyncContextManager[Transaction]:
        raise NotImplementedError

    async def fetchall_autocommit(self, sql: str, *args: Any) -> list[Row]:
        """See :meth:`Transaction.fetchall_autocommit`."""
        raise NotImplementedError(f"no autocommit side connection on {self.engine}")

    def observe_lock_wait(self, lock: str, seconds: float) -> None:
        for observe in self.lock_wait_observers:
            try:
                observe(lock, seconds)
            except Exception:  # an observer never fails the writer
                logger.exception("lock-wait observer %r failed", observe)

    def is_unavailable_error(self, error: Exception) -> bool:
        """Whether ``error`` means the database cannot be reached right now (as opposed to a
        bug or bad data); engines say which of their driver's errors those are."""
        return False

    def _unavailable(self, what: str, error: Exception) -> DatabaseUnavailable:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        logger.warning("database unavailable (%s): %s %s", what, type(error).__name__, reason)
        return DatabaseUnavailable()
