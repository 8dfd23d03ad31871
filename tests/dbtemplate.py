"""Fresh, fully migrated test databases without running the migrations for every test.

Running every migration costs 0.6-1.5 s of CPU-bound DDL per PostgreSQL test (several seconds on
a loaded machine) and ~0.05-0.2 s per SQLite test. Instead each test process migrates once per
engine and per migration set (keyed by a hash of the migration files as filled in for that
engine: a new or edited file makes a new template) and hands out copies:

* SQLite (:func:`copy_migrated_sqlite`): the template file, closed (its WAL checkpointed and
  gone), copied byte for byte.
* PostgreSQL, in-process tests (:func:`checkout_migrated_schema` / :func:`return_schema`): a
  per-process pool of migrated schemas, reset when taken (not only when given back, so a test
  that failed half-way poisons nothing): connections still on it are ended, every row is
  deleted (referencing tables first), the rows the migrations seeded are copied back from a
  seed schema, every sequence is put back where the migrations left it. A schema whose
  relations changed shape is dropped instead. Measured per test: ~0.04-0.13 s, against
  0.6-4.6 s for migrating, 0.3-0.7 s (+ a drop of up to seconds) for ``CREATE DATABASE ...
  TEMPLATE`` and ~0.5 s for ``TRUNCATE`` of every table; replaying the DDL in one round trip
  costs what migrating does.
* PostgreSQL for a real ``homeserver run`` (:func:`create_migrated_postgres`): the config names
  a database, so a database copied with ``CREATE DATABASE ... TEMPLATE`` from a migrated
  template database.

tests/storage/test_dbtemplate.py proves each copy equal to a fresh migration (tables, columns,
indexes, constraints, triggers, functions, every row, sequence positions, ``schema_version``).

Names carry this host and process (``hstpl_``/``hsseed_<key>_<host>_<pid>``,
``hspool_<key>_<host>_<pid>_<n>``, ``hstest_<host>_<pid>_<random>``): parallel workers and other
runs never share one, and what a killed run of this host left is dropped by the next run.

Tests of the migrations themselves (``open_test_database(migrate=False)``) do not come here: they
get a truly empty schema.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import itertools
import os
import shutil
import socket
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from homeserver.storage import apply_migrations
from homeserver.storage.engine_postgres import POSTGRES_TYPES
from homeserver.storage.engine_sqlite import SQLITE_TYPES
from homeserver.storage.factory import open_postgres, open_sqlite
from homeserver.storage.migrate import load_migrations

POSTGRES_DSN = os.environ.get(
    "HOMESERVER_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_ENGINE_TYPES = {"sqlite": SQLITE_TYPES, "postgres": POSTGRES_TYPES}

#: migration key -> template (a file path for SQLite, a database name for PostgreSQL) built by
#: this process.
_sqlite_templates: dict[str, Path] = {}
_postgres_templates: dict[str, str] = {}
_template_dir: Path | None = None


def migration_key(engine: str) -> str:
    """A hash of the migrations ``engine`` would apply (versions, names and filled-in SQL)."""
    digest = hashlib.sha256()
    for migration in load_migrations(engine, _ENGINE_TYPES[engine]):
        digest.update(f"{migration.version}\0{migration.name}\0{migration.sql}\0".encode())
    return digest.hexdigest()[:12]


def schema_dsn(schema: str) -> str:
    """``POSTGRES_DSN`` with ``application_name`` set to ``schema``: the pool can then end
    whatever a failed test left connected to a schema before reusing it."""
    return POSTGRES_DSN + ("&" if "?" in POSTGRES_DSN else "?") + f"application_name={schema}"


def database_dsn(name: str) -> str:
    """``POSTGRES_DSN`` pointed at database ``name``."""
    base, _, rest = POSTGRES_DSN.rpartition("/")
    query = rest.partition("?")[2]
    return f"{base}/{name}" + (f"?{query}" if query else "")


async def admin_connection() -> asyncpg.Connection:
    """A connection to ``POSTGRES_DSN``; an unreachable server FAILS the test (never a skip)."""
    try:
        return await asyncpg.connect(POSTGRES_DSN, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL at {POSTGRES_DSN} is unreachable ({exc!r}). Start it, or set "
            "HOMESERVER_TEST_SKIP_POSTGRES=1 to skip the PostgreSQL runs deliberately.",
            pytrace=False,
        )


# --- SQLite ---------------------------------------------------------------------------------


def _private_template_dir() -> Path:
    global _template_dir
    if _template_dir is None:
        _template_dir = Path(tempfile.mkdtemp(prefix="hs-test-templates-"))
        atexit.register(shutil.rmtree, _template_dir, True)
    return _template_dir


async def _sqlite_template() -> Path:
    key = migration_key("sqlite")
    template = _sqlite_templates.get(key)
    if template is not None and template.exists():
        return template
    template = _private_template_dir() / f"template_{key}.db"
    building = template.with_name(f"building_{uuid.uuid4().hex}.db")
    db = await open_sqlite(building)
    try:
        await apply_migrations(db)
    finally:
        await db.close()
    # Closing the last connection checkpoints the WAL into the file and removes it; a copy of
    # the file alone must be the whole database.
    wal = Path(f"{building}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise RuntimeError(f"SQLite template {building} kept a non-empty WAL after closing")
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{building}{suffix}").unlink(missing_ok=True)
    os.replace(building, template)
    _sqlite_templates[key] = template
    return template


async def copy_migrated_sqlite(path: Path) -> None:
    """Put a freshly migrated SQLite database at ``path`` (which must not exist yet)."""
    if path.exists():
        raise FileExistsError(path)
    template = await _sqlite_template()
    path.parent.mkdir(parents=True, exist_ok=True)
    # 0600 from the start, as open_sqlite creates it (it warns about a wider file).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out, template.open("rb") as src:
        shutil.copyfileobj(src, out)


# --- PostgreSQL: a pool of migrated schemas, reset on checkout -----------------------------

#: The shape of the schema's relations, by name (index lookups only: the catalogs of a test
#: database churned by thousands of schemas are too slow to scan per test). A schema whose
#: relations changed shape (a test ran DDL on them) is not reused. A test that *adds* a table,
#: sequence or function to its schema is not noticed: tests must not do DDL on their schema.
_SHAPE = """
SELECT c.relname, c.relkind::text, c.relnatts, c.relchecks, c.relhasrules,
       (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid),
       (SELECT count(*) FROM pg_constraint k WHERE k.conrelid = c.oid),
       (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = c.oid),
       (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' '
                          || a.attnotnull::text || ' ' || a.atthasdef::text, ', '
                          ORDER BY a.attnum)
          FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
  FROM pg_class c
 WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)
   AND c.relname = ANY($2::text[])
"""


@dataclass
class _Recipe:
    """How to bring a used schema of one migration set back to its just-migrated state."""

    #: every relation's name, and :data:`_SHAPE` of them just after migrating
    relations: list[str]
    shape: list[tuple[Any, ...]]
    #: ``{schema}`` and ``{seed}`` are filled in: delete every row (children before parents),
    #: copy back the rows the migrations seeded, put every sequence back where it was.
    reset_sql: str


@dataclass
class _Pool:
    recipe: _Recipe | None = None
    seed_schema: str | None = None
    free: list[str] = field(default_factory=list)
    made: list[str] = field(default_factory=list)


_pools: dict[str, _Pool] = {}
_schema_counter = itertools.count()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _shape(admin: asyncpg.Connection, schema: str, relations: list[str]) -> list[Any]:
    return sorted(tuple(row) for row in await admin.fetch(_SHAPE, schema, relations))


async def _migrate_schema(schema: str) -> None:
    db = await open_postgres(POSTGRES_DSN, 1, 1, schema=schema)
    try:
        await apply_migrations(db)
    finally:
        await db.close()


async def _delete_order(admin: asyncpg.Connection, schema: str) -> list[str]:
    """The schema's tables, every referencing table before the tables it references."""
    tables = [
        r[0]
        for r in await admin.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename", schema
        )
    ]
    edges = await admin.fetch(
        "SELECT c.relname AS child, p.relname AS parent FROM pg_constraint k"
        " JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid"
        " WHERE k.contype = 'f' AND k.connamespace = (SELECT oid FROM pg_namespace"
        " WHERE nspname = $1) AND c.oid <> p.oid",
        schema,
    )
    children: dict[str, set[str]] = {t: set() for t in tables}
    for edge in edges:
        children[edge["parent"]].add(edge["child"])
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(table: str) -> None:
        if table in ordered or table in visiting:
            return
        visiting.add(table)
        for child in sorted(children[table]):
            visit(child)
        ordered.append(table)

    for table in tables:
        visit(table)
    return ordered


async def _build_recipe(admin: asyncpg.Connection, key: str, schema: str) -> tuple[_Recipe, str]:
    """From a just-migrated ``schema``: the reset recipe, and a seed schema keeping a copy of
    every row the migrations inserted."""
    seed = f"hsseed_{key}_{_HOST}_{os.getpid()}"
    await admin.execute(
        f"DROP SCHEMA IF EXISTS {_quote(seed)} CASCADE; CREATE SCHEMA {_quote(seed)}"
    )
    order = await _delete_order(admin, schema)
    statements = ["SET LOCAL lock_timeout = '10s'"]
    statements += [f"DELETE FROM {{schema}}.{_quote(t)}" for t in order]
    for table in reversed(order):  # parents first
        if not await admin.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {_quote(schema)}.{_quote(table)})"
        ):
            continue
        columns = [
            r[0]
            for r in await admin.fetch(
                "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                " WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)"
                " AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped"
                " AND a.attgenerated = ''"
                " ORDER BY a.attnum",
                schema,
                table,
            )
        ]
        listed = ", ".join(_quote(c) for c in columns)
        await admin.execute(
            f"CREATE TABLE {_quote(seed)}.{_quote(table)} AS"
            f" SELECT {listed} FROM {_quote(schema)}.{_quote(table)}"
        )
        statements.append(
            f"INSERT INTO {{schema}}.{_quote(table)} ({listed}) OVERRIDING SYSTEM VALUE"
            f" SELECT {listed} FROM {{seed}}.{_quote(table)}"
        )
    for (sequence,) in await admin.fetch(
        "SELECT sequencename FROM pg_sequences WHERE schemaname = $1 ORDER BY 1", schema
    ):
        last_value, is_called = await admin.fetchrow(
            f"SELECT last_value, is_called FROM {_quote(schema)}.{_quote(sequence)}"
        )
        statements.append(
            f"SELECT setval('{{schema}}.{_quote(sequence)}', {int(last_value)}, {bool(is_called)})"
        )
    relations = [
        r[0]
        for r in await admin.fetch(
            "SELECT relname FROM pg_class WHERE relnamespace ="
            " (SELECT oid FROM pg_namespace WHERE nspname = $1) ORDER BY relname",
            schema,
        )
    ]
    shape = await _shape(admin, schema, relations)
    recipe = _Recipe(relations, shape, ";\n".join(statements) + ";")
    return recipe, seed


async def _reset(admin: asyncpg.Connection, pool: _Pool, schema: str) -> bool:
    """Bring a used schema back to the just-migrated state; False if it cannot be (DDL ran)."""
    assert pool.recipe is not None and pool.seed_schema is not None
    # Nobody may still be at work in it (a pool a failed test never closed).
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = $1 AND pid <> pg_backend_pid()",
        schema,
    )
    if await _shape(admin, schema, pool.recipe.relations) != pool.recipe.shape:
        return False
    sql = pool.recipe.reset_sql.replace("{schema}", _quote(schema)).replace(
        "{seed}", _quote(pool.seed_schema)
    )
    try:
        async with admin.transaction():
            await admin.execute(sql)
    except asyncpg.PostgresError:
        return False
    return True


async def checkout_migrated_schema() -> str:
    """A schema in ``POSTGRES_DSN`` holding exactly what a fresh migration leaves; give it back
    with :func:`return_schema`. Schemas are reused within this process, reset on checkout."""
    key = migration_key("postgres")
    pool = _pools.setdefault(key, _Pool())
    admin = await admin_connection()
    try:
        while pool.free:
            schema = pool.free.pop()
            if await _reset(admin, pool, schema):
                return schema
            pool.made.remove(schema)
            await admin.execute(f"DROP SCHEMA IF EXISTS {_quote(schema)} CASCADE")
        if not pool.made and pool.recipe is None:
            await _drop_abandoned(admin)
        schema = f"hspool_{key}_{_HOST}_{os.getpid()}_{next(_schema_counter)}"
        await admin.execute(f"DROP SCHEMA IF EXISTS {_quote(schema)} CASCADE")
        try:
            await _migrate_schema(schema)
            if pool.recipe is None:
                pool.recipe, pool.seed_schema = await _build_recipe(admin, key, schema)
            elif await _shape(admin, schema, pool.recipe.relations) != pool.recipe.shape:
                raise RuntimeError(f"schema {schema} migrated differently from its template")
        except BaseException:
            await admin.execute(f"DROP SCHEMA IF EXISTS {_quote(schema)} CASCADE")
            raise
        pool.made.append(schema)
        return schema
    finally:
        await admin.close()


def return_schema(schema: str) -> None:
    """Give a schema from :func:`checkout_migrated_schema` back (it is reset when next taken)."""
    for pool in _pools.values():
        if schema in pool.made and schema not in pool.free:
            pool.free.append(schema)
            return


async def drop_schemas() -> None:
    """Drop the schemas this process made (at the end of the session)."""
    names = [s for pool in _pools.values() for s in [*pool.made, pool.seed_schema] if s]
    _pools.clear()
    if not names:
        return
    admin = await asyncpg.connect(POSTGRES_DSN, timeout=10)
    try:
        # A connection a test leaked (idle in a transaction on the schema) would make the DROP
        # wait for ever, after the last test: give up instead; the next run drops what is left
        # (``_drop_abandoned``).
        await admin.execute("SET lock_timeout = '10s'")
        for name in names:
            with contextlib.suppress(asyncpg.PostgresError):
                await admin.execute(f"DROP SCHEMA IF EXISTS {_quote(name)} CASCADE")
    finally:
        await admin.close()


# --- PostgreSQL -----------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _abandoned(name: str) -> bool:
    """Whether ``name`` (``hs<kind>_[<key>_]<host>_<pid>[_...]``) is this host's and its process
    is gone."""
    parts = name.split("_")
    offset = 1 if parts[0] == "hstest" else 2
    if len(parts) < offset + 2:
        return False
    host, pid = parts[offset], parts[offset + 1]
    return host == _HOST and pid.isdigit() and not _pid_alive(int(pid))


async def _drop_abandoned(admin: asyncpg.Connection) -> None:
    """Drop this host's template and test databases and pooled schemas whose process is gone
    (a killed run)."""
    databases = await admin.fetch(
        "SELECT datname FROM pg_database"
        " WHERE datname LIKE 'hstpl\\_%' OR datname LIKE 'hstest\\_%'"
    )
    for (name,) in databases:
        if _abandoned(name):
            await admin.execute(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")
    schemas = await admin.fetch(
        "SELECT nspname FROM pg_namespace"
        " WHERE nspname LIKE 'hspool\\_%' OR nspname LIKE 'hsseed\\_%'"
    )
    for (name,) in schemas:
        if _abandoned(name):
            await admin.execute(f"DROP SCHEMA IF EXISTS {_quote(name)} CASCADE")


async def _postgres_template(admin: asyncpg.Connection) -> str:
    key = migration_key("postgres")
    name = _postgres_templates.get(key)
    if name is not None:
        return name
    await _drop_abandoned(admin)
    name = f"hstpl_{key}_{_HOST}_{os.getpid()}"
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        db = await open_postgres(database_dsn(name), 1, 1)
        try:
            await apply_migrations(db)
        finally:
            await db.close()
    except BaseException:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        raise
    _postgres_templates[key] = name
    return name


async def create_migrated_postgres() -> str:
    """A new database copied from this process's migrated template; returns its name (connect
    with :func:`database_dsn`, drop with :func:`drop_postgres_database`)."""
    admin = await admin_connection()
    try:
        template = await _postgres_template(admin)
        name = f"hstest_{_HOST}_{os.getpid()}_{uuid.uuid4().hex[:16]}"
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name
    finally:
        await admin.close()


async def drop_postgres_database(name: str) -> None:
    admin = await admin_connection()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def drop_templates() -> None:
    """Drop the PostgreSQL templates this process built (at the end of the session)."""
    if not _postgres_templates:
        return
    admin = await asyncpg.connect(POSTGRES_DSN, timeout=10)
    try:
        for name in _postgres_templates.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    _postgres_templates.clear()
