"""Many-row inserts as one statement on PostgreSQL (``storage/pg_bulk.py``): the same rows, the
same conflicts and the same errors as row by row, on both engines (SQLite keeps its own
``executemany``)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import asyncpg
import pytest

from homeserver.storage import Database, pg_bulk
from homeserver.storage.pg_bulk import parse_insert

N = pg_bulk.BULK_ROWS * 3

# --- the statement's shape (pure) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "columns", "update_key"),
    [
        ("INSERT INTO t (a, b) VALUES (?, ?)", ("a", "b"), None),
        ("INSERT INTO t (a,b) VALUES (?,?) ON CONFLICT DO NOTHING", ("a", "b"), None),
        (
            "INSERT INTO t (a, b, c) VALUES (?, ?, ?) ON CONFLICT (a, c) DO UPDATE"
            " SET b = excluded.b",
            ("a", "b", "c"),
            (0, 2),
        ),
        ("insert into t (a) values (?) on conflict (a) do nothing", ("a",), None),
    ],
)
def test_inserts_that_go_in_as_one(
    sql: str, columns: tuple[str, ...], update_key: tuple[int, ...] | None
) -> None:
    shape = parse_insert(sql)
    assert shape is not None
    assert (shape.table, shape.columns, shape.update_key) == ("t", columns, update_key)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t (a, b) VALUES (?, FALSE)",  # a literal: not a column per placeholder
        "INSERT INTO t (a, b) VALUES (?)",
        "INSERT INTO t (a) VALUES (?) RETURNING a",
        "INSERT INTO t (a) VALUES (?) ON CONFLICT ON CONSTRAINT t_pkey DO UPDATE SET a = 1",
        "INSERT INTO t (a) VALUES (?) ON CONFLICT (a) DO UPDATE SET a = ?",
        "INSERT INTO t (a) VALUES (?) ON CONFLICT (z) DO UPDATE SET a = excluded.a",
        "INSERT INTO t (a) SELECT a FROM u WHERE a = ?",
        "UPDATE t SET a = ? WHERE b = ?",
        "DELETE FROM t WHERE a = ?",
    ],
)
def test_other_statements_stay_row_by_row(sql: str) -> None:
    assert parse_insert(sql) is None


def test_repeated_update_keys_stay_row_by_row() -> None:
    shape = parse_insert("INSERT INTO t (a, b) VALUES (?, ?) ON CONFLICT (a) DO UPDATE SET b = 1")
    assert shape is not None
    assert pg_bulk.fits_one_statement(shape, [("x", 1), ("y", 2)])
    assert not pg_bulk.fits_one_statement(shape, [("x", 1), ("x", 2)])


# --- against the database ---------------------------------------------------------------------

CREATE = (
    "CREATE TABLE bulk_rows (k TEXT PRIMARY KEY, n BIGINT NOT NULL, flag BOOLEAN NOT NULL,"
    " note TEXT)"
)
INSERT = "INSERT INTO bulk_rows (k, n, flag, note) VALUES (?, ?, ?, ?)"


async def _table(database: Database) -> list[tuple[object, ...]]:
    rows = await database.fetchall("SELECT k, n, flag, note FROM bulk_rows ORDER BY k")
    return [(k, int(n), bool(flag), note) for k, n, flag, note in rows]


def _rows(count: int, *, start: int = 0, n: int = 0) -> list[tuple[object, ...]]:
    return [
        (f"k{i:05d}", n + i, i % 2 == 0, None if i % 3 else f"note {i} ü")
        for i in range(start, start + count)
    ]


@pytest.fixture
async def table(database: Database) -> AsyncIterator[Database]:
    # The test databases are reused between tests: the table is the test's own.
    async with database.transaction("create_bulk_rows") as txn:
        await txn.execute("DROP TABLE IF EXISTS bulk_rows")
        await txn.execute(CREATE)
    yield database
    async with database.transaction("drop_bulk_rows") as txn:
        await txn.execute("DROP TABLE bulk_rows")


async def test_rows_go_in_as_given(table: Database) -> None:
    rows = _rows(N)
    async with table.transaction("bulk") as txn:
        await txn.executemany(INSERT, rows)
        assert txn.statements == 1
        if txn.engine == "postgres":  # it went in as one statement over arrays
            assert txn._bulk_types[INSERT] == (
                "pg_catalog.text",
                "pg_catalog.int8",
                "pg_catalog.bool",
                "pg_catalog.text",
            )
    assert await _table(table) == sorted(rows)


async def test_do_nothing_keeps_the_first_of_each_key(table: Database) -> None:
    async with table.transaction("first") as txn:
        await txn.executemany(INSERT, _rows(10))
    # Repeats of stored keys and repeats within the batch: the first one stays.
    batch = _rows(N, n=1000) + _rows(N, n=2000)
    async with table.transaction("bulk") as txn:
        await txn.executemany(f"{INSERT} ON CONFLICT DO NOTHING", batch)
    expected = _rows(10) + _rows(N - 10, start=10, n=1000)
    assert await _table(table) == sorted(expected)


async def test_do_update_takes_each_new_value(table: Database) -> None:
    upsert = f"{INSERT} ON CONFLICT (k) DO UPDATE SET n = excluded.n, note = excluded.note"
    async with table.transaction("first") as txn:
        await txn.executemany(INSERT, _rows(N))
    # Half the keys are stored, half are new; every flag differs from the stored one.
    batch = [(k, n, not flag, note) for k, n, flag, note in _rows(N, start=N // 2, n=5000)]
    async with table.transaction("bulk") as txn:
        await txn.executemany(upsert, batch)
    expected = {row[0]: row for row in _rows(N)}
    for k, n, flag, note in batch:
        # A stored row takes the new n and note and keeps its flag; a new row is as given.
        expected[k] = (k, n, expected[k][2], note) if k in expected else (k, n, flag, note)
    assert await _table(table) == sorted(expected.values())


async def test_do_update_with_a_repeated_key_keeps_the_last(table: Database) -> None:
    upsert = f"{INSERT} ON CONFLICT (k) DO UPDATE SET n = excluded.n"
    batch = [*_rows(N), ("k00000", 99, True, None)]
    async with table.transaction("bulk") as txn:
        await txn.executemany(upsert, batch)
    stored = dict((k, n) for k, n, _, _ in await _table(table))
    assert stored["k00000"] == 99
    assert len(stored) == N


async def test_a_repeated_key_without_on_conflict_is_refused(table: Database) -> None:
    batch = _rows(N) + _rows(1)
    with pytest.raises((asyncpg.UniqueViolationError, sqlite3.IntegrityError)):
        async with table.transaction("bulk") as txn:
            await txn.executemany(INSERT, batch)
    assert await _table(table) == []


async def test_a_wrong_type_is_refused_as_row_by_row(table: Database) -> None:
    if table.engine != "postgres":
        pytest.skip("SQLite stores text in a BIGINT column as it is")
    batch = [*_rows(N - 1), ("bad", "not a number", True, None)]
    with pytest.raises(asyncpg.DataError):
        async with table.transaction("bulk") as txn:
            await txn.executemany(INSERT, batch)
    assert await _table(table) == []
