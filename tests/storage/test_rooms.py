"""Rooms: atomic creation with genesis events, lifecycle compare-and-set, aliases."""

from __future__ import annotations

import pytest

from homeserver.storage import NewRoom, Store, Transaction
from tests.storage.helpers import ALICE, StoredRoom


async def test_room_row_and_genesis_commit_together(store: Store) -> None:
    room = StoredRoom(store, "12")
    await room.genesis()
    record = await store.rooms.get_room(room.room_id)
    assert record is not None
    assert (record.room_version, record.creator, record.status) == ("12", ALICE, "active")
    assert record.is_public is False and record.replacement_room_id is None
    assert record.current_state_group == await store.state.get_current_state_group(room.room_id)
    [created] = await store.rooms.get_transitions(room.room_id)
    assert (created.from_status, created.to_status, created.actor) == (None, "active", ALICE)
    assert await store.rooms.get_room("!nope:x") is None


async def test_failed_room_creation_leaves_nothing(store: Store) -> None:
    room = StoredRoom(store, "11")
    create = room.factory.create(ALICE)
    join = room.factory.member(ALICE, "join", prev=[create], auth=[create])

    async def create_room(txn: Transaction) -> None:
        await store.persist_events_txn(
            txn,
            [(create, None), (join, None)],
            NewRoom(room.room_id, "11", ALICE, 1000),
        )
        await store.aliases.create_alias_txn(txn, "#a:example.org", room.room_id, ALICE, 1)
        raise RuntimeError("crash after writing")

    with pytest.raises(RuntimeError):
        await store.db.run_in_transaction("create_room", create_room)
    for table in (
        "rooms",
        "events",
        "event_edges",
        "event_auth",
        "state_groups",
        "state_group_entries",
        "event_to_state_groups",
        "current_state_events",
        "event_forward_extremities",
        "room_lifecycle_transitions",
        "room_aliases",
    ):
        assert await store.db.fetchval(f"SELECT COUNT(*) FROM {table}") == 0, table
    # Nothing leaked into the caches either: the events were never committed.
    assert await store.events.get_event(create.event_id) is None


async def test_lifecycle_compare_and_set(store: Store) -> None:
    room = StoredRoom(store)
    await room.genesis()
    rooms = store.rooms
    assert await rooms.transition(
        room.room_id,
        "active",
        "upgrading",
        actor=ALICE,
        reason="upgrade to 12",
        ts=2000,
        upgrade_lock_holder=ALICE,
        upgrade_lock_expires_ts=5000,
    )
    # A second upgrader loses the compare-and-set.
    assert not await rooms.transition(
        room.room_id, "active", "upgrading", actor="@bob:x", reason=None, ts=2001
    )
    record = await rooms.get_room(room.room_id)
    assert record is not None
    assert (record.status, record.upgrade_lock_holder, record.upgrade_lock_expires_ts) == (
        "upgrading",
        ALICE,
        5000,
    )
    assert await rooms.transition(
        room.room_id,
        "upgrading",
        "tombstoned",
        actor=None,
        reason="committed",
        ts=3000,
        replacement_room_id="!new:example.org",
    )
    record = await rooms.get_room(room.room_id)
    assert record is not None
    assert (record.status, record.replacement_room_id, record.upgrade_lock_holder) == (
        "tombstoned",
        "!new:example.org",
        None,
    )
    history = [
        (t.from_status, t.to_status, t.ts) for t in await rooms.get_transitions(room.room_id)
    ]
    assert history == [
        (None, "active", 1000),
        ("active", "upgrading", 2000),
        ("upgrading", "tombstoned", 3000),
    ]
    with pytest.raises(ValueError):
        await rooms.transition(room.room_id, "tombstoned", "gone", actor=None, reason=None, ts=1)


async def test_directory_flag(store: Store) -> None:
    room = StoredRoom(store)
    await room.genesis()
    assert await store.rooms.get_public_room_ids() == []
    assert await store.rooms.set_public(room.room_id, True)
    assert await store.rooms.get_public_room_ids() == [room.room_id]
    record = await store.rooms.get_room(room.room_id)
    assert record is not None and record.is_public is True
    assert not await store.rooms.set_public("!unknown:x", True)


async def test_aliases(store: Store) -> None:
    aliases = store.aliases
    assert await aliases.create_alias("#a:x", "!old:x", ALICE, 1)
    assert not await aliases.create_alias("#a:x", "!other:x", ALICE, 2)
    assert await aliases.create_alias("#b:x", "!old:x", ALICE, 3)
    record = await aliases.get_alias("#a:x")
    assert record is not None and record.room_id == "!old:x"
    async with store.db.transaction("move") as txn:
        assert await aliases.move_aliases_txn(txn, "!old:x", "!new:x") == 2
    assert await aliases.get_aliases_for_room("!new:x") == ["#a:x", "#b:x"]
    assert await aliases.delete_alias("#a:x")
    assert await aliases.get_alias("#a:x") is None
