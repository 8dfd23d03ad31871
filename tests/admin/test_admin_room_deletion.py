"""``DELETE /_synapse/admin/v2/rooms/{roomId}`` and its status: shutdown (members leave, aliases
and directory entry go, optional block, optional replacement room) and the purge (no row of the
room left in any table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.app import Homeserver
from homeserver.config import HomeserverConfig
from homeserver.events.draft import EventDraft
from homeserver.storage.admin_rooms import like_suffix
from homeserver.storage.room_purge import KEPT_TABLES, LocalMembersRemain, tables_with_column
from tests.admin.helpers import (
    V1,
    V2,
    deletions_finish,  # noqa: F401 (fixture)
    join,
)
from tests.builders import create_room, generous_config
from tests.harness import TestServer, TestUser

pytestmark = pytest.mark.usefixtures("deletions_finish")


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def _delete(server: TestServer, admin: TestUser, room_id: str, **body: Any) -> dict[str, Any]:
    """Delete and wait for the background task; returns the status by delete ID."""
    status, answer = await server.call("DELETE", f"{V2}/rooms/{room_id}", admin, json=body)
    assert status == 200, answer
    delete_id = answer["delete_id"]
    await server.hs.room_deletion.wait(delete_id)
    status, result = await server.call("GET", f"{V2}/rooms/delete_status/{delete_id}", admin)
    assert status == 200, result
    return dict(result)


async def _busy_room(server: TestServer) -> tuple[TestUser, TestUser, str]:
    """A public room with an alias, two local members, messages, a redaction, a receipt, a
    tag, a state change and an upgrade's link to it."""
    alice = await server.register("alice")
    bob = await server.register("bob")
    room = await create_room(
        server,
        alice,
        name="Doomed",
        preset="public_chat",
        visibility="public",
        room_alias_name="doomed",
    )
    await join(server, bob, room)
    events = []
    for n in range(3):
        status, body = await server.call(
            "PUT",
            f"/rooms/{room}/send/m.room.message/t{n}",
            bob,
            json={"msgtype": "m.text", "body": f"hi {n}"},
        )
        assert status == 200, body
        events.append(body["event_id"])
    status, _ = await server.call(
        "PUT", f"/rooms/{room}/redact/{events[0]}/r1", alice, json={"reason": "spam"}
    )
    assert status == 200
    status, _ = await server.call("POST", f"/rooms/{room}/receipt/m.read/{events[2]}", bob, json={})
    assert status == 200
    status, _ = await server.call(
        "PUT", f"/user/{bob.user_id}/rooms/{room}/tags/u.work", bob, json={"order": 0.5}
    )
    assert status == 200
    status, _ = await server.call(
        "PUT", f"/rooms/{room}/state/m.room.topic", alice, json={"topic": "soon gone"}
    )
    assert status == 200
    return alice, bob, room


async def _rows_of_room(
    hs: Homeserver, room_id: str, event_ids: list[str], groups: list[int]
) -> dict[str, int]:
    """Rows mentioning the room in every table: by room_id, by event_id, by state group."""
    db = hs.store.db
    found: dict[str, int] = {}
    for table in sorted(await tables_with_column(db, "room_id") - KEPT_TABLES):
        found[table] = int(
            await db.fetchval(f"SELECT COUNT(*) FROM {table} WHERE room_id = ?", room_id)
        )
    for table in sorted(await tables_with_column(db, "event_id")):
        for event_id in event_ids:
            found[f"{table}:{event_id}"] = int(
                await db.fetchval(f"SELECT COUNT(*) FROM {table} WHERE event_id = ?", event_id)
            )
    for group in groups:
        found[f"state_group_entries:{group}"] = int(
            await db.fetchval(
                "SELECT COUNT(*) FROM state_group_entries WHERE state_group = ?", group
            )
        )
    found["room_upgrades"] = int(
        await db.fetchval(
            "SELECT COUNT(*) FROM room_upgrades WHERE old_room_id = ? OR new_room_id = ?",
            room_id,
            room_id,
        )
    )
    return {k: v for k, v in found.items() if v}


async def _room_footprint(hs: Homeserver, room_id: str) -> tuple[list[str], list[int]]:
    rows = await hs.store.db.fetchall("SELECT event_id FROM events WHERE room_id = ?", room_id)
    groups = await hs.store.db.fetchall("SELECT id FROM state_groups WHERE room_id = ?", room_id)
    return [r[0] for r in rows], [int(g[0]) for g in groups]


async def test_delete_with_purge_leaves_no_row_of_the_room(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    alice, bob, room = await _busy_room(server)
    # An upgraded room links to its successor; purge the old one.
    status, upgraded = await server.call(
        "POST", f"/rooms/{room}/upgrade", alice, json={"new_version": "11"}
    )
    assert status == 200, upgraded
    new_room = upgraded["replacement_room"]
    other = await create_room(server, alice, name="bystander")
    event_ids, groups = await _room_footprint(server.hs, room)
    before = await _rows_of_room(server.hs, room, event_ids, groups)
    assert {"rooms", "events", "state_groups", "current_state_events", "receipts"} <= set(before)
    assert "room_upgrades" in before and "redactions" in before and "account_data" in before
    other_events, other_groups = await _room_footprint(server.hs, other)
    other_before = await _rows_of_room(server.hs, other, other_events, other_groups)

    result = await _delete(server, admin, room)

    assert result["status"] == "complete", result
    assert result["room_id"] == room
    # Members of an upgraded room stay in the old one too (as in Synapse): both leave it now.
    assert result["shutdown_room"] == {
        "kicked_users": [alice.user_id, bob.user_id],
        "failed_to_kick_users": [],
        "local_aliases": [],
        "new_room_id": None,
    }
    assert await _rows_of_room(server.hs, room, event_ids, groups) == {}
    # Nothing else went: another room, and the successor room, are intact.
    assert await _rows_of_room(server.hs, other, other_events, other_groups) == other_before
    status, details = await server.call("GET", f"{V1}/rooms/{new_room}", admin)
    assert status == 200 and details["joined_members"] == 2
    # The room is gone from every admin and client view.
    status, _ = await server.call("GET", f"{V1}/rooms/{room}", admin)
    assert status == 404
    status, _ = await server.call("GET", f"/rooms/{room}/state", alice)
    assert status in (403, 404)
    status, sync = await server.call("GET", "/sync", bob)
    assert status == 200 and room not in sync.get("rooms", {}).get("join", {})


async def test_delete_makes_members_leave_and_purges(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    alice, bob, room = await _busy_room(server)
    carol = await server.register("carol")
    status, _ = await server.call(
        "POST", f"/rooms/{room}/invite", alice, json={"user_id": carol.user_id}
    )
    assert status == 200
    event_ids, groups = await _room_footprint(server.hs, room)

    result = await _delete(server, admin, room)

    assert result["status"] == "complete", result
    shutdown = result["shutdown_room"]
    assert sorted(shutdown["kicked_users"]) == [alice.user_id, bob.user_id, carol.user_id]
    assert shutdown["failed_to_kick_users"] == [] and shutdown["new_room_id"] is None
    # The aliases removed with the room are listed (as Synapse), not [].
    assert shutdown["local_aliases"] == ["#doomed:test.example"]
    assert await _rows_of_room(server.hs, room, event_ids, groups) == {}
    # The alias is gone too, and the status by room lists this deletion.
    status, _ = await server.call("GET", "/directory/room/%23doomed:test.example", alice)
    assert status == 404
    status, by_room = await server.call("GET", f"{V2}/rooms/{room}/delete_status", admin)
    assert status == 200 and by_room == {"results": [result]}
    status, joined = await server.call("GET", "/joined_rooms", bob)
    assert joined == {"joined_rooms": []}


async def test_shutdown_without_purge_blocks_and_keeps_the_history(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    alice, bob, room = await _busy_room(server)
    result = await _delete(server, admin, room, purge=False, block=True)
    assert result["status"] == "complete", result
    assert sorted(result["shutdown_room"]["kicked_users"]) == [alice.user_id, bob.user_id]
    # Members left through the membership path: their leaves are in the room's history.
    for user in (alice, bob):
        event = await server.hs.store.state.get_current_state_event(
            room, "m.room.member", user.user_id
        )
        assert event is not None and event.membership == "leave" and event.sender == user.user_id
        assert await server.hs.store.room_use.is_forgotten(user.user_id, room)
    record = await server.hs.store.rooms.get_room(room)
    assert record is not None and not record.is_public
    assert await server.hs.store.aliases.get_aliases_for_room(room) == []
    # Blocked: nobody may join or be invited any more.
    status, body = await server.call("POST", f"/rooms/{room}/join", bob, json={})
    assert status == 403 and body["errcode"] == "M_FORBIDDEN", body
    assert body["error"] == "This room has been blocked on this server"
    status, _ = await server.call("POST", "/join/%23doomed:test.example", bob, json={})
    assert status == 404  # the alias went with the shutdown


async def test_block_an_unknown_room(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    bob = await server.register("bob")
    room = "!unknown:test.example"
    result = await _delete(server, admin, room, block=True)
    assert result["status"] == "complete", result
    assert await server.hs.store.room_deletions.is_blocked(room)
    status, body = await server.call("POST", f"/rooms/{room}/join", bob, json={})
    assert status == 403, body


async def test_new_room_user_id_moves_members_and_aliases(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    alice, bob, room = await _busy_room(server)
    mod = await server.register("moderator")
    result = await _delete(
        server, admin, room, new_room_user_id=mod.user_id, room_name="Moved", message="Gone."
    )
    assert result["status"] == "complete", result
    shutdown = result["shutdown_room"]
    new_room = shutdown["new_room_id"]
    assert new_room is not None
    assert shutdown["local_aliases"] == ["#doomed:test.example"]
    status, alias = await server.call("GET", "/directory/room/%23doomed:test.example", alice)
    assert status == 200 and alias["room_id"] == new_room
    status, members = await server.call("GET", f"{V1}/rooms/{new_room}/members", admin)
    assert members["members"] == sorted([alice.user_id, bob.user_id, mod.user_id])
    name = await server.hs.store.state.get_current_state_event(new_room, "m.room.name")
    assert name is not None and name.content["name"] == "Moved"
    levels = await server.hs.store.state.get_current_state_event(new_room, "m.room.power_levels")
    assert levels is not None and levels.content["users_default"] == -10
    rows = await server.hs.store.db.fetchall(
        "SELECT json FROM events WHERE room_id = ? AND type = 'm.room.message'", new_room
    )
    assert len(rows) == 1 and '"body":"Gone."' in rows[0][0]


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"block": "yes"}, "M_BAD_JSON"),
        ({"purge": 1}, "M_BAD_JSON"),
        ({"force_purge": None}, "M_BAD_JSON"),
        ({"new_room_user_id": "@someone:elsewhere.example"}, "M_UNKNOWN"),
        ({"message": 5}, "M_BAD_JSON"),
    ],
)
async def test_bad_bodies(server: TestServer, body: dict[str, Any], errcode: str) -> None:
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    room = await create_room(server, alice, name="x")
    status, answer = await server.call("DELETE", f"{V2}/rooms/{room}", admin, json=body)
    assert status == 400 and answer["errcode"] == errcode, answer
    assert await server.hs.store.room_deletions.get_for_room(room) == []


async def test_bad_ids_and_unknown_statuses(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    status, body = await server.call("DELETE", f"{V2}/rooms/not-a-room", admin, json={})
    assert status == 400, body
    status, body = await server.call("GET", f"{V2}/rooms/delete_status/nope", admin)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await server.call("GET", f"{V2}/rooms/!none:test.example/delete_status", admin)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"


async def test_one_deletion_of_a_room_at_a_time(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    room = await create_room(server, alice, name="x")
    # A deletion recorded but not yet running (as after a crash, before the restart).
    assert await server.hs.store.room_deletions.add(
        "pending", room, {"requester_user_id": admin.user_id}, {}, 1
    )
    status, body = await server.call("DELETE", f"{V2}/rooms/{room}", admin, json={})
    assert status == 400 and "already in progress" in body["error"], body


async def test_an_unfinished_deletion_resumes_after_a_restart(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    alice, bob, room = await _busy_room(server)
    event_ids, groups = await _room_footprint(server.hs, room)
    result = {
        "kicked_users": [],
        "failed_to_kick_users": [],
        "local_aliases": [],
        "new_room_id": None,
    }
    assert await server.hs.store.room_deletions.add(
        "interrupted", room, {"requester_user_id": admin.user_id, "purge": True}, result, 1
    )
    await server.hs.room_deletion.resume()  # what serve() does at start-up
    await server.hs.room_deletion.wait_idle()
    status, body = await server.call("GET", f"{V2}/rooms/delete_status/interrupted", admin)
    assert status == 200 and body["status"] == "complete", body
    assert sorted(body["shutdown_room"]["kicked_users"]) == [alice.user_id, bob.user_id]
    assert await _rows_of_room(server.hs, room, event_ids, groups) == {}


async def test_purge_refuses_while_local_users_are_joined_unless_forced(
    server: TestServer,
) -> None:
    alice = await server.register("alice")
    room = await create_room(server, alice, name="x")
    store = server.hs.store
    with pytest.raises(LocalMembersRemain):
        await store.room_purge.purge_room(room, like_suffix("test.example"), force=False)
    assert await store.rooms.get_room(room) is not None
    result = await store.room_purge.purge_room(room, like_suffix("test.example"), force=True)
    assert result.deleted["rooms"] == 1 and result.deleted["events"] > 0
    assert await store.rooms.get_room(room) is None


async def test_queued_pdus_of_a_purged_room_still_go_out(server: TestServer) -> None:
    """A leave queued for another server is delivered after the purge: the outbox entry gets
    the PDU itself; a queued invite into the room is dropped."""
    alice = await server.register("alice")
    room = await create_room(server, alice, name="x")
    store = server.hs.store
    message = await server.hs.sender.send(
        room,
        EventDraft("m.room.message", alice.user_id, {"msgtype": "m.text", "body": "bye"}),
    )
    async with store.db.transaction("test_queue") as txn:
        await store.outbox.enqueue_txn(
            txn, "remote.example", {"kind": "pdu", "event_id": message.event_id}, now=1
        )
        await store.outbox.enqueue_txn(
            txn,
            "remote.example",
            {"kind": "invite", "room_id": room, "event_id": message.event_id, "room_version": "10"},
            now=1,
        )
    await store.room_purge.purge_room(room, like_suffix("test.example"), force=True)
    entries = await store.outbox.head("remote.example", 10)
    assert [e.kind for e in entries] == ["pdu"]
    body = await server.hs.federation_sender._transaction_body(entries, 5)
    assert body["pdus"] == [message.federation_json()]
