"""Shared fixtures: a migrated database and a ``Store`` on each engine.

* ``db_engine`` — ``"sqlite"`` or ``"postgres"`` (the parameter; ask for it to branch).
* ``database`` — a migrated :class:`~homeserver.storage.database.Database`, fresh per test:
  SQLite in a file under ``tmp_path``; PostgreSQL in a schema of its own (created, put on the
  pool's ``search_path``, dropped afterwards) at ``HOMESERVER_TEST_POSTGRES_DSN`` (default
  ``postgresql://postgres@127.0.0.1:5432/test``).
* ``store`` — a :class:`~homeserver.storage.Store` over ``database``.
* ``open_test_database`` — an async factory ``await open_test_database(migrate=True)`` for tests
  that need a second connection pool on the same data (e.g. two processes); pools it opens are
  closed at teardown.

Any test (HTTP ones included) that asks for ``database`` or ``store`` runs once per engine. When
``HOMESERVER_TEST_SKIP_POSTGRES=1`` (``scripts/test`` sets it outside CI when PostgreSQL is down)
the PostgreSQL runs are skipped with a loud reason; otherwise an unreachable PostgreSQL FAILS the
test — CI relies on this, so never turn it into a skip here.
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, settings

from homeserver.storage import Database, Store, apply_migrations
from homeserver.storage.factory import open_postgres, open_sqlite

# Hypothesis profiles. "ci" (the default) is reproducible (derandomized: the same examples every
# run) and has no per-example deadline (a shared 2-core machine makes timings noise). "deep"
# (``--hypothesis-profile=deep``, which the hypothesis pytest plugin loads after this file) draws
# fresh random examples, ten times as many; suites that scale off ``max_examples`` (the fuzz
# of tests/fuzz/test_endpoint_bodies.py) grow with it.
_HYPOTHESIS_COMMON: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
}
settings.register_profile("ci", max_examples=100, derandomize=True, **_HYPOTHESIS_COMMON)
settings.register_profile("deep", max_examples=1000, derandomize=False, **_HYPOTHESIS_COMMON)
settings.load_profile("ci")

POSTGRES_DSN = os.environ.get(
    "HOMESERVER_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
SKIP_POSTGRES = os.environ.get("HOMESERVER_TEST_SKIP_POSTGRES") == "1"

OpenTestDatabase = Callable[..., Awaitable[Database]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_engine(request: pytest.FixtureRequest) -> str:
    engine: str = request.param
    if engine == "postgres" and SKIP_POSTGRES:
        pytest.skip(
            "!!! PostgreSQL tests SKIPPED: HOMESERVER_TEST_SKIP_POSTGRES=1 "
            f"(PostgreSQL at {POSTGRES_DSN} unreachable) !!!"
        )
    return engine


async def _admin_connection() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(POSTGRES_DSN, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL at {POSTGRES_DSN} is unreachable ({exc!r}). Start it, or set "
            "HOMESERVER_TEST_SKIP_POSTGRES=1 to skip the PostgreSQL runs deliberately.",
            pytrace=False,
        )


@pytest.fixture
async def open_test_database(db_engine: str, tmp_path: Path) -> AsyncIterator[OpenTestDatabase]:
    schema = f"test_{uuid.uuid4().hex}"
    opened: list[Database] = []

    async def open_one(*, migrate: bool = True) -> Database:
        if db_engine == "sqlite":
            db = await open_sqlite(tmp_path / "homeserver.db")
        else:
            if not opened:
                admin = await _admin_connection()
                await admin.close()
            db = await open_postgres(POSTGRES_DSN, 1, 4, schema=schema)
        opened.append(db)
        if migrate:
            await apply_migrations(db)
        return db

    yield open_one

    for db in opened:
        await db.close()
    if db_engine == "postgres" and opened:
        admin = await _admin_connection()
        try:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await admin.close()


@pytest.fixture
async def database(open_test_database: OpenTestDatabase) -> Database:
    return await open_test_database()


@pytest.fixture
def store(database: Database) -> Store:
    return Store(database)


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """At the end of each module, move what is still alive out of the garbage collector's view.

    What outlives a module (imported code, hypothesis' and the stores' caches, objects kept by
    references we do not control) would otherwise be rescanned by every full collection for the
    rest of the session: late modules ran up to 20 times slower than alone (a pure hypothesis
    state machine: 4.6 s alone, 91 s at the end of the suite)."""
    if nextitem is None or nextitem.module is not getattr(item, "module", None):
        gc.collect()
        gc.freeze()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Repeat the PostgreSQL skip at the end of the run, where nobody can miss it."""
    if SKIP_POSTGRES:
        terminalreporter.write_line(
            "WARNING: HOMESERVER_TEST_SKIP_POSTGRES=1 — every PostgreSQL test was SKIPPED",
            red=True,
            bold=True,
        )


# The in-process homeserver fixtures (hs, hs_config, server), usable by every test.
from tests.harness import hs, hs_config, server  # noqa: E402, F401
