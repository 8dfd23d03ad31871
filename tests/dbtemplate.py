"""Fresh, fully migrated test databases without running the migrations for every test.

Running every migration costs 0.6-1.5 s of CPU-bound DDL per PostgreSQL test and ~0.05-0.2 s per
SQLite test. Instead, each test process migrates one *template* per engine and per migration set
(keyed by a hash of the migration files as filled in for that engine, so a new or edited file
makes a new template), and every test gets a copy of it:

* SQLite: the template file (closed, so its WAL is checkpointed and gone) is copied with
  :func:`shutil.copyfile` — byte for byte the file a fresh migration would have left.
* PostgreSQL: ``CREATE DATABASE <per-test> TEMPLATE <template>`` — PostgreSQL copies the
  template's files, so the copy has exactly its tables, rows, sequences and ``schema_version``.
  Measured faster than the alternatives (re-running the DDL in one round trip costs as much as
  migrating, DDL being CPU-bound; TRUNCATE of every table in a pooled schema ~0.5 s).

Names carry this host and process (``hstpl_<key>_<host>_<pid>`` for templates,
``hstest_<host>_<pid>_<random>`` for copies): parallel workers and other runs never share one,
and databases left behind by a killed run of this host are dropped by the next template build.

Tests of the migrations themselves (``open_test_database(migrate=False)``) do not come here: they
get a truly empty schema.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path

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


# --- PostgreSQL -----------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _drop_abandoned(admin: asyncpg.Connection) -> None:
    """Drop this host's template and test databases whose process is gone (a killed run)."""
    rows = await admin.fetch(
        "SELECT datname FROM pg_database"
        " WHERE datname LIKE 'hstpl\\_%' OR datname LIKE 'hstest\\_%'"
    )
    for (name,) in rows:
        parts = name.split("_")
        # hstpl_<key>_<host>_<pid> / hstest_<host>_<pid>_<random>
        host, pid = (parts[2], parts[3]) if parts[0] == "hstpl" else (parts[1], parts[2])
        if host != _HOST or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
