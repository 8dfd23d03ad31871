"""The joined servers of a room (storage/room_servers.py, migration 036) stay equal to what the
room's current member list says, through every membership change, on both engines; and the
migration's backfill computes the same from existing rooms."""

from __future__ import annotations

from collections import Counter

from homeserver.storage import Store
from homeserver.storage.database import Database
from homeserver.storage.migrate import load_migrations
from homeserver.storage.room_servers import joined_servers
from homeserver.types import domain_of
from tests.storage.helpers import StoredRoom

BOB = "@bob:other.example"
CAROL = "@carol:other.example"
DAN = "@dan:third.example:8448"  # a port: the server is everything after the first ":"
ERIN = "@erin:example.org"

#: (member, membership) in order, each its own event.
STEPS = [
    (BOB, "join"),
    (CAROL, "join"),
    (DAN, "invite"),
    (DAN, "join"),
    (ERIN, "join"),
    (BOB, "leave"),
    (CAROL, "join"),  # a profile change: still joined, nothing moves
    (CAROL, "ban"),
    (DAN, "leave"),
    (BOB, "join"),
    (ERIN, "leave"),
]


async def _from_member_list(db: Database, room_id: str) -> Counter[str]:
    rows = await db.fetchall(
        "SELECT state_key FROM current_state_events"
        " WHERE room_id = ? AND type = 'm.room.member' AND membership = 'join'",
        room_id,
    )
    return Counter(domain_of(r[0]) for r in rows)


async def _counts(db: Database, room_id: str) -> Counter[str]:
    rows = await db.fetchall(
        "SELECT server_name, joined_members FROM room_joined_servers WHERE room_id = ?", room_id
    )
    return Counter({server: int(count) for server, count in rows})


async def test_counts_follow_every_membership_change(store: Store) -> None:
    room = StoredRoom(store)
    await room.genesis()
    assert await _counts(store.db, room.room_id) == Counter({"example.org": 1})
    for member, membership in STEPS:
        await room.send("m.room.member", member, {"membership": membership}, state_key=member)
        expected = await _from_member_list(store.db, room.room_id)
        assert await _counts(store.db, room.room_id) == expected, (member, membership)
        assert await joined_servers(store.db, room.room_id) == set(expected)
        assert await joined_servers(store.db, room.room_id, other_than="example.org") == (
            set(expected) - {"example.org"}
        )
        for server in ("example.org", "other.example", "third.example:8448", "nowhere.example"):
            assert await store.state.is_host_joined(room.room_id, server) == (server in expected)
    # No row is left at zero.
    assert 0 not in (await _counts(store.db, room.room_id)).values()


async def test_the_migration_backfills_existing_rooms(store: Store) -> None:
    room = StoredRoom(store)
    await room.genesis()
    for member, membership in STEPS[:6]:
        await room.send("m.room.member", member, {"membership": membership}, state_key=member)
    expected = await _from_member_list(store.db, room.room_id)
    assert len(expected) == 3
    async with store.db.transaction("test_wipe") as txn:
        await txn.execute("DELETE FROM room_joined_servers")
    [migration] = [
        m for m in load_migrations(store.db.engine, store.db.sql_types) if m.version == 36
    ]
    backfill = migration.sql[migration.sql.index("INSERT INTO room_joined_servers") :]
    async with store.db.transaction("test_backfill") as txn:
        await txn.execute(backfill.rstrip().rstrip(";"))
    assert await _counts(store.db, room.room_id) == expected
