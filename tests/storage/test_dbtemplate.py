"""The test databases copied from a migrated template (tests/dbtemplate.py) are the database a
fresh migration leaves: same tables, columns, indexes, constraints, triggers, functions, rows
(the seeded ones included), sequence positions and ``schema_version``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from homeserver.storage import Database, apply_migrations
from homeserver.storage.factory import open_postgres, open_sqlite
from homeserver.storage.migrate import Migration
from tests import dbtemplate
from tests.conftest import OpenTestDatabase
from tests.dbtemplate import POSTGRES_DSN, admin_connection


@pytest.fixture
async def freshly_migrated(db_engine: str, tmp_path: Path) -> AsyncIterator[Database]:
    """A database migrated the slow way, file by file."""
    schema = f"test_{uuid.uuid4().hex}"
    if db_engine == "sqlite":
        db = await open_sqlite(tmp_path / "fresh.db")
    else:
        db = await open_postgres(POSTGRES_DSN, 1, 2, schema=schema)
    try:
        assert await apply_migrations(db), "nothing applied: not a fresh database"
        yield db
    finally:
        await db.close()
        if db_engine == "postgres":
            admin = await admin_connection()
            try:
                await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await admin.close()


async def _rows(db: Database, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    if table == "schema_version":  # applied_ts is the wall clock of the migration
        columns = [c for c in columns if c != "applied_ts"]
    quoted = ", ".join(f'"{c}"' for c in columns)
    rows = await db.fetchall(f'SELECT {quoted} FROM "{table}"')
    return sorted(tuple(repr(v) for v in row) for row in rows)


async def _sqlite_snapshot(db: Database) -> dict[str, Any]:
    objects = await db.fetchall("SELECT type, name, tbl_name, sql FROM sqlite_master")
    snapshot: dict[str, Any] = {"objects": sorted(tuple(o) for o in objects)}
    snapshot["user_version"] = await db.fetchval("PRAGMA user_version")
    for kind, name, _, _ in snapshot["objects"]:
        if kind != "table":
            continue
        columns = [str(r[1]) for r in await db.fetchall(f'PRAGMA table_info("{name}")')]
        snapshot[f"rows {name}"] = await _rows(db, name, columns)
    return snapshot


async def _postgres_snapshot(db: Database) -> dict[str, Any]:
    schema = await db.fetchval("SELECT current_schema()")

    async def query(sql: str) -> list[tuple[str, ...]]:
        rows = await db.fetchall(sql, schema)
        return sorted(
            tuple(str(v).replace(f'"{schema}".', "").replace(f"{schema}.", "") for v in r)
            for r in rows
        )

    snapshot: dict[str, Any] = {
        "relations": await query(
            "SELECT c.relname, c.relkind FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ?"
        ),
        "columns": await query(
            "SELECT c.relname, a.attname, a.attnum, format_type(a.atttypid, a.atttypmod),"
            " pg_get_expr(d.adbin, d.adrelid), a.attnotnull, a.attgenerated"
            " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
            " WHERE n.nspname = ? AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped"
        ),
        "constraints": await query(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(c.oid)"
            " FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
            " WHERE n.nspname = ?"
        ),
        "indexes": await query(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = ?"
        ),
        "triggers": await query(
            "SELECT t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t"
            " JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = ? AND NOT t.tgisinternal"
        ),
        "functions": await query(
            "SELECT p.proname, pg_get_function_identity_arguments(p.oid), p.prosrc"
            " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ?"
        ),
        "sequences": await query(
            "SELECT sequencename, start_value, last_value, increment_by FROM pg_sequences"
            " WHERE schemaname = ?"
        ),
    }
    tables = [r[0] for r in await query("SELECT tablename FROM pg_tables WHERE schemaname = ?")]
    # Every table's rows in one round trip (applied_ts: the wall clock of the migration).
    every_table = " UNION ALL ".join(
        f"SELECT '{table}', (SELECT COALESCE(jsonb_agg(j ORDER BY j::text), '[]')::text"
        f" FROM (SELECT to_jsonb(x) - 'applied_ts' AS j FROM \"{table}\" x) y)"
        for table in tables
    )
    for table, rows in await db.fetchall(every_table):
        snapshot[f"rows {table}"] = rows
    return snapshot


async def _snapshot(db: Database) -> dict[str, Any]:
    return await (_sqlite_snapshot(db) if db.engine == "sqlite" else _postgres_snapshot(db))


async def test_a_template_copy_is_a_freshly_migrated_database(
    database: Database, freshly_migrated: Database
) -> None:
    copy, fresh = await _snapshot(database), await _snapshot(freshly_migrated)
    assert copy == fresh
    # The comparison saw the schema, the seeded rows and the migration record.
    assert any(key.startswith("rows stream_positions") for key in fresh)
    assert fresh["rows schema_version"]
    assert await apply_migrations(database) == []


async def test_sqlite_copies_are_independent(
    open_test_database: OpenTestDatabase, db_engine: str, tmp_path: Path
) -> None:
    """A test's writes never reach the template, hence never the next test's database."""
    if db_engine != "sqlite":
        pytest.skip("PostgreSQL reuses schemas: see the reset tests below")
    first = await open_test_database()
    await _scribble(first)
    await dbtemplate.copy_migrated_sqlite(tmp_path / "second.db")
    second = await open_sqlite(tmp_path / "second.db")
    try:
        assert await second.fetchval("SELECT COUNT(*) FROM stream_positions") > 0
        assert await second.fetchval("SELECT MAX(version) FROM schema_version") < 999
    finally:
        await second.close()


async def _scribble(db: Database) -> None:
    """What a test does to its database: rows deleted (seeded ones too), added, sequences
    moved."""
    async with db.transaction("scribble") as txn:
        await txn.execute("DELETE FROM stream_positions")
        await txn.execute(
            "INSERT INTO schema_version (version, name, applied_ts) VALUES (999, 'x', 0)"
        )
        if db.engine == "postgres":
            for row in await txn.fetchall(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()"
            ):
                await txn.fetchall(f"SELECT nextval('{row[0]}') FROM generate_series(1, 3)")


async def _checkout() -> tuple[str, Database]:
    schema = await dbtemplate.checkout_migrated_schema()
    return schema, await open_postgres(dbtemplate.schema_dsn(schema), 1, 2, schema=schema)


async def test_a_used_schema_comes_back_freshly_migrated(
    db_engine: str, freshly_migrated: Database
) -> None:
    """The pool's reset: after rows, seeded rows and sequences changed and a connection was
    left holding a lock, the schema is reused and equals a fresh migration; after DDL it is
    dropped and replaced by another that does."""
    if db_engine != "postgres":
        pytest.skip("the schema pool is PostgreSQL's")
    fresh = await _snapshot(freshly_migrated)
    schema, db = await _checkout()
    await _scribble(db)
    assert await _snapshot(db) != fresh
    # A failed test may leave a connection behind, in a transaction holding a lock.
    leftover = await asyncpg.connect(dbtemplate.schema_dsn(schema))
    await leftover.execute(f'BEGIN; LOCK TABLE "{schema}".stream_positions')
    await db.close()
    dbtemplate.return_schema(schema)

    again, db = await _checkout()
    try:
        assert again == schema  # reused, not rebuilt
        assert await _snapshot(db) == fresh
        assert leftover.is_closed() or not await _alive(leftover)
        async with db.transaction("ddl") as txn:
            await txn.execute("ALTER TABLE stream_positions ADD COLUMN extra INTEGER")
    finally:
        await db.close()
        await leftover.close()
        dbtemplate.return_schema(again)

    other, db = await _checkout()
    try:
        assert other != schema
        assert await _snapshot(db) == fresh
        admin = await admin_connection()
        try:
            gone = not await admin.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema)
        finally:
            await admin.close()
        assert gone
    finally:
        await db.close()
        dbtemplate.return_schema(other)


async def _alive(conn: asyncpg.Connection) -> bool:
    try:
        await conn.fetchval("SELECT 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        return False
    return True


async def test_a_migration_set_that_changes_gets_another_template(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def with_migrations(*migrations: Migration) -> str:
        monkeypatch.setattr(dbtemplate, "load_migrations", lambda engine, types: list(migrations))
        return dbtemplate.migration_key("sqlite")

    one = Migration(1, "initial", "CREATE TABLE a (x INTEGER)")
    keys = [
        with_migrations(one),
        with_migrations(one, Migration(2, "more", "CREATE TABLE b (x INTEGER)")),
        with_migrations(Migration(1, "initial", "CREATE TABLE a (x TEXT)")),
        with_migrations(Migration(1, "renamed", "CREATE TABLE a (x INTEGER)")),
    ]
    assert len(set(keys)) == len(keys)
    assert with_migrations(one) == keys[0]
