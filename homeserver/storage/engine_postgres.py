"""The PostgreSQL engine: an asyncpg pool; ``?`` placeholders become ``$n``; ``FOR UPDATE`` row
locks, transaction-scoped advisory locks, and session-level advisory locks held across network
waits (:class:`SessionLocks`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from homeserver.storage import pg_bulk
from homeserver.storage.database import Database, Row, Transaction, translate_placeholders
from homeserver.storage.errors import DatabaseUnavailable, LockTimeout

logger = logging.getLogger(__name__)

#: Polling a contended session lock: first wait, longest wait (seconds).
_LOCK_POLL_FIRST = 0.005
_LOCK_POLL_MAX = 0.1

#: Errors that mean PostgreSQL cannot be reached right now: connections refused, lost or cut by
#: a shutdown (class 57 minus a cancelled query), too many connections (class 53), and asyncpg's
#: own "connection is closed".
_UNAVAILABLE = (
    OSError,  # refused, reset, unreachable; TimeoutError (connect timeout) is an OSError too
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
)


def is_unavailable(error: BaseException) -> bool:
    if isinstance(error, asyncpg.QueryCanceledError):
        return False  # statement_timeout: the query, not the server
    if isinstance(error, _UNAVAILABLE):
        return True
    if isinstance(error, asyncpg.exceptions.InternalClientError):
        # A connection cut mid-statement can leave asyncpg's protocol in a state where the
        # next use fails with "another operation is in progress"; the pool then replaces it.
        return True
    return isinstance(error, asyncpg.InterfaceError) and "closed" in str(error)


def _rowcount(status: str) -> int:
    """``"UPDATE 3"`` → 3; ``"INSERT 0 1"`` → 1; anything else → 0."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PostgresTransaction(Transaction):
    engine = "postgres"
    lock_rows_clause = " FOR UPDATE"

    def __init__(
        self,
        name: str,
        conn: asyncpg.Connection,
        bulk_types: dict[str, tuple[str, ...] | None] | None = None,
    ) -> None:
        super().__init__(name)
        self._conn = conn
        #: per many-row INSERT's SQL: its columns' array element types, or None when the
        #: statement cannot go in as one (``pg_bulk``); shared by the database's transactions.
        self._bulk_types = {} if bulk_types is None else bulk_types

    async def execute(self, sql: str, *args: Any) -> int:
        self.statements += 1
        return _rowcount(await self._conn.execute(translate_placeholders(sql), *args))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.statements += 1
        batch = [tuple(r) for r in rows]
        if len(batch) >= pg_bulk.BULK_ROWS and await self._insert_in_one(sql, batch):
            return
        await self._conn.executemany(translate_placeholders(sql), batch)

    async def _insert_in_one(self, sql: str, rows: list[tuple[Any, ...]]) -> bool:
        """Insert ``rows`` with one statement over arrays if ``sql`` allows (``pg_bulk``)."""
        shape = pg_bulk.parse_insert(sql)
        if shape is None or not pg_bulk.fits_one_statement(shape, rows):
            return False
        if sql not in self._bulk_types:
            statement = await self._conn.prepare(translate_placeholders(sql))
            types = statement.get_parameters()
            self._bulk_types[sql] = (
                tuple(f"{t.schema}.{t.name}" for t in types)
                if all(t.kind == "scalar" for t in types)
                else None
            )
        array_types = self._bulk_types[sql]
        if array_types is None:
            return False
        await self._conn.execute(
            pg_bulk.bulk_sql(shape, array_types), *pg_bulk.columns_of(rows, len(shape.columns))
        )
        return True

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        self.statements += 1
        return [tuple(r) for r in await self._conn.fetch(translate_placeholders(sql), *args)]

    async def lock_row(self, table: str, key_column: str, key: Any) -> bool:
        row = await self.fetchone(f"SELECT 1 FROM {table} WHERE {key_column} = ? FOR UPDATE", key)
        return row is not None

    async def advisory_lock(self, key: int) -> None:
        await self._conn.execute("SELECT pg_advisory_xact_lock($1)", key)


class SessionLocks:
    """Session-level advisory locks, all on one dedicated connection of their own.

    Held across network waits (a received PDU's missing events are fetched under its room's
    lock), so they cannot be transaction locks: a transaction open for seconds would hold a
    pool connection and its snapshot. One connection holds every lock this process takes, so
    locks cost no pool connection and cannot starve it; its statements are serialised (one
    at a time on a connection) and each is a sub-millisecond ``pg_try_advisory_lock``. A
    contended lock is polled with a growing wait up to the caller's timeout, rather than
    blocking the shared connection. Callers serialise their own tasks first (session locks
    are re-entrant within a session, so two tasks of this process would both "get" it).

    If the connection is lost, PostgreSQL has released its locks: holders are not interrupted
    (the data they guard is written under row locks and compare-and-set, which stay correct);
    the next lock opens a new connection. A process that dies releases its locks with its
    connection.
    """

    def __init__(self, dsn: str, settings: dict[str, str]) -> None:
        self._dsn = dsn
        self._settings = settings
        self._conn: asyncpg.Connection | None = None
        self._io = asyncio.Lock()
        #: key → the connection it was taken on (released only there).
        self._held: dict[int, asyncpg.Connection] = {}

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self._dsn, server_settings=self._settings)
        return self._conn

    async def _try(self, key: int) -> bool:
        async with self._io:
            try:
                conn = await self._connection()
                got = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
            except Exception as e:
                if not is_unavailable(e):
                    raise
                self._conn = None  # opened again at the next lock
                logger.warning("advisory lock connection unavailable: %s", e)
                raise DatabaseUnavailable() from e
            if got:
                self._held[key] = conn
            return got

    async def _release(self, key: int) -> None:
        async with self._io:
            conn = self._held.pop(key, None)
            if conn is None or conn.is_closed():
                return  # lost with its connection: PostgreSQL released it then
            await conn.fetchval("SELECT pg_advisory_unlock($1)", key)

    async def claim(self, key: int) -> bool:
        """Take ``key`` for good (until the connection ends); True if held now."""
        async with self._io:
            held = self._held.get(key)
            if held is not None and not held.is_closed():
                return True
            conn = await self._connection()
            got = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
            if got:
                self._held[key] = conn
            return got

    async def probe(self, key: int) -> bool:
        """Whether a live session holds ``key`` (this one included)."""
        async with self._io:
            held = self._held.get(key)
            if held is not None and not held.is_closed():
                return True
            conn = await self._connection()
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                await conn.fetchval("SELECT pg_advisory_unlock($1)", key)
                return False
            return True

    @asynccontextmanager
    async def hold(self, key: int, timeout: float) -> AsyncIterator[None]:
        deadline = time.monotonic() + timeout
        wait = _LOCK_POLL_FIRST
        while not await self._try(key):
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockTimeout(f"advisory lock {key}")
            await asyncio.sleep(min(wait, left))
            wait = min(wait * 2, _LOCK_POLL_MAX)
        try:
            yield
        finally:
            try:
                await asyncio.shield(self._release(key))
            except Exception as e:
                logger.warning("releasing advisory lock %d failed: %s", key, e)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        self._held.clear()
        if conn is not None and not conn.is_closed():
            await conn.close()


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The side pool's reset: nothing to undo (see ``PostgresDatabase._open``)."""


POSTGRES_TYPES = {
    "id_pk": "BIGSERIAL PRIMARY KEY",
    "bytes": "BYTEA",
    # the position of a substring (a user ID's server part, migration 036)
    "str_find": "strpos",
}


class PostgresDatabase(Database):
    engine = "postgres"
    tracks_liveness = True

    def __init__(self, dsn: str, min_size: int, max_size: int, schema: str | None) -> None:
        super().__init__()
        self.dsn = dsn
        self.sql_types = POSTGRES_TYPES
        self._min_size = min_size
        self._max_size = max_size
        self.schema = schema
        self.lock_scope = schema or ""
        self._pool: asyncpg.Pool | None = None
        self._session_locks: SessionLocks | None = None
        #: a few connections for statements that must commit on their own while a
        #: transaction of the main pool is open (never waits for the main pool: no deadlock
        #: when every main connection is in a transaction that allocates).
        self._side_pool: asyncpg.Pool | None = None
        self._bulk_types: dict[str, tuple[str, ...] | None] = {}

    async def _open(self) -> None:
        settings: dict[str, str] = {}
        if self.schema is not None:
            if not self.schema.replace("_", "").isalnum():
                raise ValueError(f"bad schema name {self.schema!r}")
            conn = await asyncpg.connect(self.dsn)
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            finally:
                await conn.close()
            settings["search_path"] = self.schema
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            server_settings=settings,
        )
        self._session_locks = SessionLocks(self.dsn, settings)
        # synchronous_commit off: the side statements (a writer registering in
        # stream_positions_in_flight) need to be visible at once, not durable (a crash aborts
        # the writer too; and the writer's own durable commit flushes the WAL before it).
        # Waiting for a WAL flush there would cost every write transaction an fsync more.
        # Those single statements leave no session state, so a connection goes back to the
        # pool without asyncpg's reset query (a round trip saved per statement).
        self._side_pool = await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=4,
            reset=_keep_session,
            server_settings={**settings, "synchronous_commit": "off"},
        )

    def session_lock(self, key: int, *, timeout: float) -> Any:
        assert self._session_locks is not None, "database is closed"
        return self._session_locks.hold(key, timeout)

    async def claim_liveness(self, key: int) -> bool:
        assert self._session_locks is not None, "database is closed"
        return await self._session_locks.claim(key)

    async def is_alive(self, key: int) -> bool:
        assert self._session_locks is not None, "database is closed"
        return await self._session_locks.probe(key)

    async def close(self) -> None:
        if self._session_locks is not None:
            await self._session_locks.close()
            self._session_locks = None
        if self._side_pool is not None:
            await self._side_pool.close()
            self._side_pool = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def _engine_transaction(self, name: str, read_only: bool) -> AsyncIterator[Transaction]:
        assert self._pool is not None, "database is closed"
        async with self._pool.acquire() as conn, conn.transaction(readonly=read_only):
            yield PostgresTransaction(name, conn, self._bulk_types)

    def is_unavailable_error(self, error: Exception) -> bool:
        return is_unavailable(error)

    async def fetchall_autocommit(self, sql: str, *args: Any) -> list[Row]:
        assert self._side_pool is not None, "database is closed"
        rows = await self._side_pool.fetch(translate_placeholders(sql), *args)
        return [tuple(r) for r in rows]

    async def fetchall(self, sql: str, *args: Any) -> list[Row]:
        assert self._pool is not None, "database is closed"
        try:
            rows = await self._pool.fetch(translate_placeholders(sql), *args)
        except Exception as e:
            if is_unavailable(e):
                raise self._unavailable("read", e) from e
            raise
        return [tuple(r) for r in rows]
