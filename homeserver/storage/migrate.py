"""Versioned schema migrations, applied at start-up.

Files live in ``homeserver/storage/migrations/`` and are named ``NNN_name.sql`` (one template for
both engines) or ``NNN_name.sqlite.sql`` / ``NNN_name.postgres.sql`` (an engine-specific variant,
which wins over the template for that engine). Templates may use ``{{id_pk}}`` (an
auto-incrementing integer primary key), ``{{bytes}}`` (BLOB / BYTEA) and ``{{str_find}}``
(``instr`` / ``strpos``: a substring's position); everything else is SQL
both engines accept. Statements are separated by a ``;`` at the end of a line.

Each file runs in its own transaction together with its ``schema_version`` row, so a failed
migration leaves the schema at the previous version. On PostgreSQL an advisory lock keeps two
processes starting together from applying the same file twice.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from importlib import resources

from homeserver.storage.database import Database, Transaction

logger = logging.getLogger(__name__)

_NAME = re.compile(
    r"^(?P<version>\d{3})_(?P<name>[a-z0-9_]+)(?:\.(?P<engine>sqlite|postgres))?\.sql$"
)
#: an arbitrary constant naming the migration lock among PostgreSQL advisory locks.
_MIGRATION_LOCK = 0x6D69_6772_6174_65  # "migrate"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(engine: str, sql_types: dict[str, str]) -> list[Migration]:
    """The migrations for ``engine`` in version order, templates filled in."""
    chosen: dict[int, tuple[bool, str, str]] = {}
    for entry in resources.files("homeserver.storage").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            continue
        file_engine = match["engine"]
        if file_engine is not None and file_engine != engine:
            continue
        version = int(match["version"])
        specific = file_engine is not None
        previous = chosen.get(version)
        if previous is not None and previous[0] == specific:
            raise RuntimeError(f"two migrations numbered {version:03d}")
        if previous is None or specific:
            chosen[version] = (specific, match["name"], entry.read_text(encoding="utf-8"))
    migrations = []
    for version in sorted(chosen):
        _, name, sql = chosen[version]
        for token, replacement in sql_types.items():
            sql = sql.replace("{{" + token + "}}", replacement)
        migrations.append(Migration(version, name, sql))
    return migrations


def split_statements(sql: str) -> list[str]:
    """Statements of a migration file; ``--`` comment lines dropped."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    statements = re.split(r";\s*$", "\n".join(lines), flags=re.MULTILINE)
    return [s.strip() for s in statements if s.strip()]


async def _ensure_version_table(txn: Transaction) -> None:
    await txn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ts BIGINT NOT NULL)"
    )


async def apply_migrations(db: Database) -> list[int]:
    """Apply every migration not yet recorded; returns the versions applied now."""
    applied_now: list[int] = []
    for migration in load_migrations(db.engine, db.sql_types):
        async with db.transaction(f"migrate_{migration.version:03d}") as txn:
            await txn.advisory_lock(_MIGRATION_LOCK)
            await _ensure_version_table(txn)
            done = await txn.fetchval(
                "SELECT 1 FROM schema_version WHERE version = ?", migration.version
            )
            if done:
                continue
            logger.info("applying migration %03d_%s", migration.version, migration.name)
            for statement in split_statements(migration.sql):
                await txn.execute(statement)
            await txn.execute(
                "INSERT INTO schema_version (version, name, applied_ts) VALUES (?, ?, ?)",
                migration.version,
                migration.name,
                int(time.time() * 1000),
            )
            applied_now.append(migration.version)
    return applied_now


async def schema_version(db: Database) -> int:
    """The highest applied migration (0 for an empty database)."""
    async with db.transaction("schema_version") as txn:
        await _ensure_version_table(txn)
        return int(await txn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
