"""Migration 037 rebuilds five of SQLite's per-event tables as WITHOUT ROWID and keys ``events``
by ``stream_ordering``. A database made by the migrations before it, with rows in it, comes through
with every row, column, key, foreign key and index; the rebuilt tables still refuse what they
refused, and the store keeps working on them. PostgreSQL, which 037 leaves alone, still
migrates."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from homeserver.storage import Database, Store, apply_migrations, migrate
from homeserver.storage.migrate import Migration
from tests.conftest import OpenTestDatabase
from tests.storage.helpers import StoredRoom

#: the tables 037 rebuilds; all but events become WITHOUT ROWID.
WITHOUT_ROWID = (
    "event_auth",
    "state_group_entries",
    "event_to_state_groups",
    "event_forward_extremities",
    "room_joined_servers",
)
REBUILT = ("events", *WITHOUT_ROWID)
#: written with every event too, but left as they were (see the migration).
UNTOUCHED = ("event_edges", "current_state_events")
BOB = "@bob:other.example"


def _sqlite_only(db_engine: str) -> None:
    if db_engine != "sqlite":
        pytest.skip("037 changes only SQLite's storage layout")


async def migrate_up_to(db: Database, version: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Apply the migrations up to ``version``; the versions applied."""
    every = migrate.load_migrations

    def up_to(engine: str, sql_types: dict[str, str]) -> list[Migration]:
        return [m for m in every(engine, sql_types) if m.version <= version]

    with monkeypatch.context() as patch:
        patch.setattr(migrate, "load_migrations", up_to)
        return await apply_migrations(db)


async def layout(db: Database, table: str) -> dict[str, Any]:
    """What a table promises: its columns, foreign keys, constraint and named indexes."""
    columns = await db.fetchall(
        'SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(?) ORDER BY cid',
        table,
    )
    foreign_keys = await db.fetchall(
        'SELECT "table", "from", "to", on_update, on_delete FROM pragma_foreign_key_list(?)'
        ' ORDER BY "from"',
        table,
    )
    indexes: dict[str, tuple[Any, ...]] = {}
    for name, unique, origin, partial in await db.fetchall(
        'SELECT name, "unique", origin, partial FROM pragma_index_list(?)', table
    ):
        keys = await db.fetchall("SELECT name FROM pragma_index_info(?) ORDER BY seqno", name)
        # An automatic index's name follows the table's history; what it enforces does not.
        label = name if origin == "c" else f"{origin}:{','.join(k[0] for k in keys)}"
        indexes[label] = (unique, partial, [k[0] for k in keys])
    return {"columns": columns, "foreign_keys": foreign_keys, "indexes": indexes}


async def table_rows(db: Database, table: str) -> list[tuple[Any, ...]]:
    names = [r[0] for r in await db.fetchall("SELECT name FROM pragma_table_info(?)", table)]
    order = ", ".join(f'"{n}"' for n in names)
    return [tuple(r) for r in await db.fetchall(f"SELECT * FROM {table} ORDER BY {order}")]


async def fill(store: Store) -> StoredRoom:
    """Rows in every rebuilt table, as persistence writes them, and by hand one event with a
    negative stream ordering (as the rowid now, it must come through like any other)."""
    room = StoredRoom(store)
    await room.genesis()
    await room.join(BOB)
    await room.send("m.room.message", BOB, {"body": "hello", "msgtype": "m.text"})
    await room.send("m.room.topic", content={"topic": "t"}, state_key="")
    async with store.db.transaction("test_backfilled") as txn:
        await txn.execute(
            "INSERT INTO events (event_id, room_id, room_version, stream_ordering,"
            " topological_ordering, type, state_key, sender, origin_server_ts, json, outlier)"
            " VALUES ('$old', ?, '10', -5, 1, 'm.room.message', NULL, ?, 1, '{}', TRUE)",
            room.room_id,
            BOB,
        )
    return room


async def test_037_keeps_rows_keys_and_indexes(
    db_engine: str, open_test_database: OpenTestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    _sqlite_only(db_engine)
    db = await open_test_database(migrate=False)
    await migrate_up_to(db, 36, monkeypatch)
    store = Store(db)
    room = await fill(store)
    tables = (*REBUILT, *UNTOUCHED)
    before = {t: (await layout(db, t), await table_rows(db, t)) for t in tables}
    assert all(rows for _, rows in before.values())

    assert await migrate_up_to(db, 37, monkeypatch) == [37]

    after = {t: (await layout(db, t), await table_rows(db, t)) for t in tables}
    for table in tables:
        assert after[table][1] == before[table][1], table
    # A primary key column is NOT NULL in a WITHOUT ROWID table (and on PostgreSQL); the
    # rowid table, by SQLite's old quirk, had let event_to_state_groups.event_id be NULL.
    assert before["event_to_state_groups"][0]["columns"][0] == ("event_id", "TEXT", 0, None, 1)
    before["event_to_state_groups"][0]["columns"][0] = ("event_id", "TEXT", 1, None, 1)
    for table in (*WITHOUT_ROWID, *UNTOUCHED):
        assert after[table][0] == before[table][0], table
    # events: the same columns in the same order; stream_ordering became the rowid (INTEGER
    # PRIMARY KEY: the separate unique index is gone), event_id is UNIQUE NOT NULL instead of
    # the primary key.
    old_events, new_events = before["events"][0], after["events"][0]
    assert [c[0] for c in new_events["columns"]] == [c[0] for c in old_events["columns"]]
    changed = {c[0]: c for c in new_events["columns"]}
    assert changed["stream_ordering"][1:] == ("INTEGER", 0, None, 1)
    assert changed["event_id"][1:] == ("TEXT", 1, None, 0)
    assert [c for c in new_events["columns"] if c[0] not in ("stream_ordering", "event_id")] == [
        c for c in old_events["columns"] if c[0] not in ("stream_ordering", "event_id")
    ]
    assert old_events["indexes"].pop("pk:event_id") == (1, 0, ["event_id"])
    assert old_events["indexes"].pop("u:stream_ordering") == (1, 0, ["stream_ordering"])
    assert new_events["indexes"].pop("u:event_id") == (1, 0, ["event_id"])
    assert new_events["indexes"] == old_events["indexes"]
    assert new_events["foreign_keys"] == old_events["foreign_keys"] == []
    assert await db.fetchval("SELECT COUNT(*) FROM events WHERE rowid IS NOT stream_ordering") == 0

    without_rowid = {
        r[0] for r in await db.fetchall("SELECT name FROM pragma_table_list WHERE wr = 1")
    }
    assert without_rowid >= set(WITHOUT_ROWID)
    assert not without_rowid & {"events", *UNTOUCHED}
    assert await db.fetchall("PRAGMA foreign_key_check") == []
    assert await db.fetchall("PRAGMA integrity_check") == [("ok",)]
    assert await db.fetchval("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE '%_new'") == 0

    await _still_refuses(db, room)
    # And the store carries on where it left off.
    later = await room.send("m.room.name", content={"name": "n"}, state_key="")
    stored = await store.events.get_event(later.event_id)
    assert stored is not None and stored.internal.stream_ordering is not None
    stored_before = [r[3] for r in before["events"][1]]  # stream_ordering: the 4th column
    assert stored.internal.stream_ordering > max(stored_before)
    state = await store.state.get_current_state_ids(room.room_id)
    assert state[("m.room.name", "")] == later.event_id
    assert state[("m.room.member", BOB)] is not None


async def _still_refuses(db: Database, room: StoredRoom) -> None:
    """Each rebuilt table's keys, NOT NULLs and foreign keys still hold."""
    create = room.events[0].event_id
    refused = [
        # an event with a taken ID, a taken stream ordering, no ID
        (
            "INSERT INTO events (event_id, room_id, room_version, stream_ordering,"
            " topological_ordering, type, sender, origin_server_ts, json)"
            " VALUES (?, 'r', '10', 999999, 1, 't', 's', 1, '{}')",
            (create,),
        ),
        (
            "INSERT INTO events (event_id, room_id, room_version, stream_ordering,"
            " topological_ordering, type, sender, origin_server_ts, json)"
            " VALUES ('$fresh', 'r', '10', -5, 1, 't', 's', 1, '{}')",
            (),
        ),
        (
            "INSERT INTO events (event_id, room_id, room_version, stream_ordering,"
            " topological_ordering, type, sender, origin_server_ts, json)"
            " VALUES (NULL, 'r', '10', 999999, 1, 't', 's', 1, '{}')",
            (),
        ),
        (
            "INSERT INTO event_auth (event_id, auth_id, room_id) VALUES ('a', 'b', NULL)",
            (),
        ),
        (
            "INSERT INTO event_auth (event_id, auth_id, room_id)"
            " SELECT event_id, auth_id, room_id FROM event_auth LIMIT 1",
            (),
        ),
        (
            "INSERT INTO state_group_entries (state_group, type, state_key, event_id)"
            " SELECT state_group, type, state_key, event_id FROM state_group_entries LIMIT 1",
            (),
        ),
        (
            "INSERT INTO state_group_entries (state_group, type, state_key, event_id)"
            " VALUES (987654321, 't', '', 'e')",
            (),
        ),
        (
            "INSERT INTO event_to_state_groups (event_id, state_group_before, state_group_after)"
            " SELECT event_id, state_group_before, state_group_after FROM event_to_state_groups"
            " LIMIT 1",
            (),
        ),
        (
            "INSERT INTO event_to_state_groups (event_id, state_group_before, state_group_after)"
            " SELECT 'x', state_group_before, 987654321 FROM event_to_state_groups LIMIT 1",
            (),
        ),
        (
            "INSERT INTO event_forward_extremities (room_id, event_id)"
            " SELECT room_id, event_id FROM event_forward_extremities LIMIT 1",
            (),
        ),
        (
            "INSERT INTO room_joined_servers (room_id, server_name, joined_members)"
            " SELECT room_id, server_name, joined_members FROM room_joined_servers LIMIT 1",
            (),
        ),
    ]
    for sql, args in refused:
        with pytest.raises(sqlite3.IntegrityError):
            async with db.transaction("test_refused") as txn:
                await txn.execute(sql, *args)


async def test_037_changes_nothing_on_postgres(
    db_engine: str, open_test_database: OpenTestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db_engine != "postgres":
        pytest.skip("the PostgreSQL variant of 037")
    db = await open_test_database(migrate=False)
    await migrate_up_to(db, 36, monkeypatch)
    store = Store(db)
    room = await fill(store)
    columns_sql = (
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    )
    indexes_sql = (
        "SELECT tablename, indexname, indexdef FROM pg_indexes"
        " WHERE schemaname = current_schema() ORDER BY indexname"
    )
    columns, indexes = await db.fetchall(columns_sql), await db.fetchall(indexes_sql)
    rows = {t: await db.fetchval(f"SELECT COUNT(*) FROM {t}") for t in REBUILT}

    assert await migrate_up_to(db, 37, monkeypatch) == [37]

    assert await db.fetchall(columns_sql) == columns
    assert await db.fetchall(indexes_sql) == indexes
    assert {t: await db.fetchval(f"SELECT COUNT(*) FROM {t}") for t in REBUILT} == rows
    later = await room.send("m.room.name", content={"name": "n"}, state_key="")
    assert await store.events.get_event(later.event_id) is not None
