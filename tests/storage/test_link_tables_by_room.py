"""Migration 038 keys ``event_auth`` and ``event_edges`` by room first, on both engines. A
database migrated up to 037 with rows in it comes through with every row; the new keys refuse a
duplicate edge as the old ones did; and the readers, which now name the room, still find what
they found (auth chains, forward extremities, a history purge)."""

from __future__ import annotations

import sqlite3

import asyncpg
import pytest

from homeserver.storage import Database, Store
from tests.conftest import OpenTestDatabase
from tests.storage.test_fewer_btrees import BOB, fill, migrate_up_to

#: each table and its columns.
TABLES = {
    "event_auth": "event_id, auth_id, room_id",
    "event_edges": "event_id, prev_event_id, room_id",
}


async def table_rows(db: Database, table: str) -> list[tuple[str, ...]]:
    columns = TABLES[table]
    rows = await db.fetchall(f"SELECT {columns} FROM {table} ORDER BY {columns}")
    return [tuple(r) for r in rows]


async def _primary_key(db: Database, db_engine: str, table: str) -> list[str]:
    if db_engine == "sqlite":
        rows = await db.fetchall(
            "SELECT name, pk FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk", table
        )
        return [r[0] for r in rows]
    rows = await db.fetchall(
        "SELECT a.attname FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON TRUE"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum"
        " WHERE c.relname = ? AND n.nspname = current_schema() AND i.indisprimary"
        " ORDER BY k.ord",
        table,
    )
    return [r[0] for r in rows]


async def test_038_keys_the_edges_by_room_and_keeps_every_row(
    db_engine: str, open_test_database: OpenTestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = await open_test_database(migrate=False)
    await migrate_up_to(db, 37, monkeypatch)
    store = Store(db)
    room = await fill(store)
    before = {t: await table_rows(db, t) for t in TABLES}
    assert all(before.values())
    assert await _primary_key(db, db_engine, "event_auth") == ["event_id", "auth_id"]

    assert await migrate_up_to(db, 38, monkeypatch) == [38]

    assert {t: await table_rows(db, t) for t in TABLES} == before
    assert await _primary_key(db, db_engine, "event_auth") == ["room_id", "event_id", "auth_id"]
    assert await _primary_key(db, db_engine, "event_edges") == [
        "room_id",
        "event_id",
        "prev_event_id",
    ]
    if db_engine == "sqlite":
        assert await db.fetchall("PRAGMA integrity_check") == [("ok",)]
        assert await db.fetchval("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE '%_new'") == 0

    # A duplicate edge is still refused.
    event_id, auth_id, room_id = before["event_auth"][0]
    with pytest.raises((sqlite3.IntegrityError, asyncpg.UniqueViolationError)):
        async with db.transaction("test_duplicate_edge") as txn:
            await txn.execute(
                "INSERT INTO event_auth (event_id, auth_id, room_id) VALUES (?, ?, ?)",
                event_id,
                auth_id,
                room_id,
            )

    # The readers find what they found: the auth chain of the newest event, and the new
    # event's place as the room's only forward extremity.
    later = await room.send("m.room.name", content={"name": "n"}, state_key="")
    chain = await store.events.get_auth_chain_ids(room.room_id, [later.event_id])
    assert set(later.auth_event_ids()) <= chain
    assert any(event.type == "m.room.create" and event.event_id in chain for event in room.events)
    extremities = await store.events.get_forward_extremities(room.room_id)
    assert extremities.event_ids == [later.event_id]
    state = await store.state.get_current_state_ids(room.room_id)
    assert state[("m.room.member", BOB)] is not None
