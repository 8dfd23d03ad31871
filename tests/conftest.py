"""Shared fixtures: a migrated database and a ``Store`` on each engine.

* ``db_engine`` — ``"sqlite"`` or ``"postgres"`` (the parameter; ask for it to branch).
* ``database`` — a migrated :class:`~homeserver.storage.database.Database`, fresh per test and
  without running the migrations per test (tests/dbtemplate.py): SQLite in a file under
  ``tmp_path`` copied from a template this process migrated once; PostgreSQL in a schema of
  ``HOMESERVER_TEST_POSTGRES_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``) from
  this process's pool, reset to the just-migrated state when taken.
* ``store`` — a :class:`~homeserver.storage.Store` over ``database``.
* ``open_test_database`` — an async factory ``await open_test_database(migrate=True)`` for tests
  that need a second connection pool on the same data (e.g. two processes); pools it opens are
  closed at teardown. ``migrate=False`` on the first call gives a truly empty database (an empty
  schema in ``HOMESERVER_TEST_POSTGRES_DSN``) for tests of the migrations themselves.

Any test (HTTP ones included) that asks for ``database`` or ``store`` runs once per engine. When
``HOMESERVER_TEST_SKIP_POSTGRES=1`` (``scripts/test`` sets it outside CI when PostgreSQL is down)
the PostgreSQL runs are skipped with a loud reason; otherwise an unreachable PostgreSQL FAILS the
test — CI relies on this, so never turn it into a skip here.
"""

from __future__ import annotations

import asyncio
import gc
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from homeserver.storage import Database, Store, apply_migrations
from homeserver.storage.factory import open_postgres, open_sqlite
from tests import hang_report
from tests.dbtemplate import (
    POSTGRES_DSN,
    admin_connection,
    checkout_migrated_schema,
    copy_migrated_sqlite,
    drop_schemas,
    drop_templates,
    return_schema,
    schema_dsn,
)

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


@pytest.fixture
async def open_test_database(db_engine: str, tmp_path: Path) -> AsyncIterator[OpenTestDatabase]:
    """The first ``open_one()`` makes the test's database: a copy of the migrated template or a
    reset pooled schema (tests/dbtemplate.py) or, with ``migrate=False``, a truly empty one;
    later calls open more pools on the same data (``migrate=True`` then applies whatever is
    missing, normally nothing)."""
    sqlite_path = tmp_path / "homeserver.db"
    schema: str | None = None
    pooled = False  # the schema is the pool's (given back) rather than this test's (dropped)
    opened: list[Database] = []

    async def open_one(*, migrate: bool = True) -> Database:
        nonlocal schema, pooled
        first = not opened
        if db_engine == "sqlite":
            if first and migrate:
                await copy_migrated_sqlite(sqlite_path)
            db = await open_sqlite(sqlite_path)
        else:
            if first and migrate:
                schema, pooled = await checkout_migrated_schema(), True
            elif first:
                schema = f"test_{uuid.uuid4().hex}"
                admin = await admin_connection()
                await admin.close()
            assert schema is not None
            db = await open_postgres(schema_dsn(schema), 1, 4, schema=schema)
        opened.append(db)
        if migrate and not first:
            await apply_migrations(db)
        return db

    yield open_one

    for db in opened:
        await db.close()
    if pooled and schema is not None:
        return_schema(schema)
    elif schema is not None:
        admin = await admin_connection()
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


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    return hang_report.set_timer(item, settings)


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """At the end of each module, move what is still alive out of the garbage collector's view.

    What outlives a module (imported code, hypothesis' and the stores' caches, objects kept by
    references we do not control) would otherwise be rescanned by every full collection for the
    rest of the session: late modules ran up to 20 times slower than alone (a pure hypothesis
    state machine: 4.6 s alone, 91 s at the end of the suite)."""
    if nextitem is None or nextitem.module is not getattr(item, "module", None):
        gc.collect()
        gc.freeze()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the PostgreSQL templates and pooled schemas this process made (tests/dbtemplate.py)."""
    if not SKIP_POSTGRES:
        asyncio.run(drop_templates())
        asyncio.run(drop_schemas())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print where each rerun test hung (scripts/test reruns only a timed-out test, and -rR
    names it without its report); repeat the PostgreSQL skip at the end, where nobody can miss
    it."""
    for report in terminalreporter.stats.get("rerun", []):
        terminalreporter.write_sep("=", f"HUNG, then rerun: {report.nodeid}", red=True)
        terminalreporter.write_line(str(report.longrepr))
    if SKIP_POSTGRES:
        terminalreporter.write_line(
            "WARNING: HOMESERVER_TEST_SKIP_POSTGRES=1 — every PostgreSQL test was SKIPPED",
            red=True,
            bold=True,
        )


# The in-process homeserver fixtures (hs, hs_config, server), usable by every test.
from tests.harness import hs, hs_config, server  # noqa: E402, F401
