"""The Database interface on both engines: transactions, placeholders, migrations."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

from homeserver.storage import Database, DatabaseSettings, Transaction, open_database
from homeserver.storage.database import placeholders, translate_placeholders
from homeserver.storage.engine_postgres import POSTGRES_TYPES
from homeserver.storage.engine_sqlite import SQLITE_TYPES
from homeserver.storage.migrate import apply_migrations, load_migrations, schema_version
from tests.conftest import POSTGRES_DSN, OpenTestDatabase


def test_placeholders_translate_outside_quotes() -> None:
    sql = "SELECT '?' , \"a?\" FROM t WHERE a = ? AND b IN (?, ?)"
    assert (
        translate_placeholders(sql) == "SELECT '?' , \"a?\" FROM t WHERE a = $1 AND b IN ($2, $3)"
    )
    assert placeholders(3) == "?, ?, ?"
    with pytest.raises(ValueError):
        placeholders(0)


def test_migration_templates_filled_per_engine() -> None:
    sqlite = load_migrations("sqlite", SQLITE_TYPES)
    postgres = load_migrations("postgres", POSTGRES_TYPES)
    assert [m.version for m in sqlite] == [m.version for m in postgres]
    assert all("{{" not in m.sql for m in sqlite + postgres)
    assert "BYTEA" in postgres[0].sql and "BLOB" in sqlite[0].sql
    [sqlite_036] = [m.sql for m in sqlite if m.version == 36]
    [postgres_036] = [m.sql for m in postgres if m.version == 36]
    assert "instr(state_key" in sqlite_036 and "strpos(state_key" in postgres_036


async def test_migrations_idempotent(open_test_database: OpenTestDatabase) -> None:
    db = await open_test_database(migrate=False)
    assert await schema_version(db) == 0
    first = await apply_migrations(db)
    assert first and first == sorted(first)
    version = await schema_version(db)
    assert version == first[-1]
    assert await apply_migrations(db) == []
    assert await schema_version(db) == version
    count = await db.fetchval("SELECT COUNT(*) FROM schema_version")
    assert count == len(first)
    # A second pool on the same data (another process starting) finds nothing to do.
    other = await open_test_database(migrate=False)
    assert await apply_migrations(other) == []


async def test_transaction_commit_and_reads(database: Database) -> None:
    async with database.transaction("insert_user") as txn:
        changed = await txn.execute(
            "INSERT INTO users (user_id, password_hash, admin, created_ts) VALUES (?, ?, ?, ?)",
            "@a:x",
            None,
            True,
            5,
        )
        assert changed == 1
        assert await txn.fetchval("SELECT created_ts FROM users WHERE user_id = ?", "@a:x") == 5
    await_row = await database.fetchone("SELECT user_id, created_ts FROM users")
    assert await_row == ("@a:x", 5)
    assert await database.fetchall("SELECT user_id FROM users WHERE user_id = ?", "@b:x") == []
    assert await database.fetchval("SELECT user_id FROM users WHERE user_id = ?", "@b:x") is None
    assert database.stats["insert_user"].count == 1


async def test_failed_transaction_leaves_nothing(database: Database) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with database.transaction("doomed") as txn:
            await txn.executemany(
                "INSERT INTO users (user_id, admin, created_ts) VALUES (?, ?, ?)",
                [("@a:x", False, 1), ("@b:x", False, 2)],
            )
            assert await txn.fetchval("SELECT COUNT(*) FROM users") == 2
            raise Boom
    assert await database.fetchval("SELECT COUNT(*) FROM users") == 0
    assert database.stats["doomed"].failures == 1
    # The connection is usable afterwards.
    async with database.transaction("after") as txn:
        await txn.execute(
            "INSERT INTO users (user_id, admin, created_ts) VALUES (?, ?, ?)", "@c:x", False, 3
        )
    assert await database.fetchval("SELECT COUNT(*) FROM users") == 1


async def test_nested_transaction_refused(database: Database) -> None:
    async with database.transaction("outer"):
        with pytest.raises(RuntimeError, match="inside transaction"):
            async with database.transaction("inner"):
                pass


async def test_after_commit_hooks(database: Database) -> None:
    ran: list[str] = []
    async with database.transaction("hooks") as txn:
        txn.call_after_commit(lambda: ran.append("committed"))
        assert ran == []
    assert ran == ["committed"]
    with pytest.raises(ValueError):
        async with database.transaction("hooks_rollback") as txn:
            txn.call_after_commit(lambda: ran.append("rolled back"))
            raise ValueError
    assert ran == ["committed"]


async def test_run_in_transaction_and_read_only(database: Database) -> None:
    async def insert(txn: Transaction, user_id: str) -> int:
        return await txn.execute(
            "INSERT INTO users (user_id, admin, created_ts) VALUES (?, ?, ?)", user_id, False, 1
        )

    assert await database.run_in_transaction("insert", insert, "@a:x") == 1
    async with database.transaction("look", read_only=True) as txn:
        assert await txn.fetchval("SELECT COUNT(*) FROM users") == 1


async def test_blobs_and_booleans_round_trip(database: Database) -> None:
    key = bytes(range(32))
    async with database.transaction("blob") as txn:
        await txn.execute(
            "INSERT INTO server_keys (server_name, key_id, verify_key, valid_until_ts, fetched_ts)"
            " VALUES (?, ?, ?, ?, ?)",
            "s",
            "ed25519:a",
            key,
            1,
            2,
        )
    assert bytes(await database.fetchval("SELECT verify_key FROM server_keys")) == key


async def test_open_database_factory(db_engine: str, tmp_path: Path) -> None:
    schema = f"test_{uuid.uuid4().hex}"
    if db_engine == "sqlite":
        settings = DatabaseSettings(engine="sqlite3", path=str(tmp_path / "f.db"))
    else:
        settings = DatabaseSettings(
            engine="postgresql", dsn=POSTGRES_DSN, cp_min=1, cp_max=2, schema=schema
        )
    db = await open_database(settings)
    try:
        assert db.engine == db_engine
        assert await schema_version(db) >= 1
    finally:
        await db.close()
        if db_engine == "postgres":
            admin = await asyncpg.connect(POSTGRES_DSN)
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await admin.close()
    with pytest.raises(ValueError):
        await open_database(DatabaseSettings(engine="oracle"))
