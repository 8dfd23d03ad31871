"""A room upgrade killed (SIGKILL) at each named step, then restarted: the old room is still
``active`` with no trace of a new room (killed before COMMIT) or fully upgraded (killed after
COMMIT); no room stays ``upgrading`` (start-up recovery); no event is lost; the upgrade can be
done (or repeated, with the same answer) after the restart.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.crash.harness import (
    ENGINES,
    SERVER_NAME,
    SIGKILLED,
    CrashServer,
    crash_server,
    crashing_request,
)
from tests.http_client import Client, q

BEFORE_COMMIT = ["upgrade.locked", "upgrade.planned", "upgrade.built", "upgrade.committing"]
AFTER_COMMIT = ["upgrade.committed"]
OLD_VERSION = "10"
NEW_VERSION = "11"
ALIAS = f"#upgraded:{SERVER_NAME}"


class Room:
    """The upgraded room's cast and what was written to it before the crash."""

    def __init__(self) -> None:
        self.room_id = ""
        self.tokens: dict[str, str] = {}  # user ID -> access token
        self.sent: list[str] = []

    @property
    def alice(self) -> str:
        return next(iter(self.tokens.values()))


async def set_up_room(client: Client) -> Room:
    """alice's public v10 room with bob and carol joined, an alias, state and messages."""
    room = Room()
    for name in ("alice", "bob", "carol"):
        user_id, token = await client.register(name)
        room.tokens[user_id] = token
    created = await client.ok(
        "POST",
        "/createRoom",
        room.alice,
        {
            "preset": "public_chat",
            "room_version": OLD_VERSION,
            "room_alias_name": "upgraded",
            "name": "Before the upgrade",
            "topic": "state to carry over",
        },
    )
    room.room_id = created["room_id"]
    for token in list(room.tokens.values())[1:]:
        await client.ok("POST", f"/join/{q(room.room_id)}", token, {})
    for i, token in enumerate(room.tokens.values()):
        reply = await client.ok(
            "PUT",
            f"/rooms/{q(room.room_id)}/send/m.room.message/m{i}",
            token,
            {"msgtype": "m.text", "body": f"message {i}"},
        )
        room.sent.append(reply["event_id"])
    reply = await client.ok(
        "PUT", f"/rooms/{q(room.room_id)}/state/org.example.extra/k", room.alice, {"x": 1}
    )
    room.sent.append(reply["event_id"])
    return room


async def assert_fully_upgraded(
    client: Client, server: CrashServer, room: Room, new_room: str
) -> None:
    old_state = await client.ok("GET", f"/rooms/{q(room.room_id)}/state", room.alice)
    tombstones = [e for e in old_state if e["type"] == "m.room.tombstone"]
    assert len(tombstones) == 1 and tombstones[0]["content"]["replacement_room"] == new_room
    assert await server.probe.room_status(room.room_id) == ("tombstoned", new_room)
    assert await server.probe.successor_rooms(room.room_id) == [new_room]
    assert await server.probe.room_status(new_room) == ("active", None)
    recorded = await server.probe.rows(
        "SELECT new_room_id FROM room_upgrades WHERE old_room_id = ?", room.room_id
    )
    assert recorded == [(new_room,)]

    new_state = await client.ok("GET", f"/rooms/{q(new_room)}/state", room.alice)
    by_key = {(e["type"], e["state_key"]): e["content"] for e in new_state}
    create = by_key[("m.room.create", "")]
    assert create["room_version"] == NEW_VERSION
    assert create["predecessor"]["room_id"] == room.room_id
    assert by_key[("m.room.name", "")]["name"] == "Before the upgrade"
    assert by_key[("m.room.topic", "")]["topic"] == "state to carry over"
    assert by_key[("m.room.join_rules", "")]["join_rule"] == "public"
    assert by_key[("m.room.canonical_alias", "")]["alias"] == ALIAS
    members = await client.ok("GET", f"/rooms/{q(new_room)}/joined_members", room.alice)
    assert set(members["joined"]) == set(room.tokens)
    resolved = await client.ok("GET", f"/directory/room/{q(ALIAS)}")
    assert resolved["room_id"] == new_room
    assert await server.probe.orphans() == {}

    # members see it through /sync and can talk in the new room
    bob_token = list(room.tokens.values())[1]
    sync = await client.ok("GET", "/sync?timeout=0", bob_token)
    assert new_room in sync["rooms"]["join"], sync["rooms"]
    await client.ok(
        "PUT",
        f"/rooms/{q(new_room)}/send/m.room.message/after",
        bob_token,
        {"msgtype": "m.text", "body": "in the new room"},
    )


async def assert_nothing_lost(client: Client, room: Room) -> None:
    for event_id in room.sent:
        await client.ok("GET", f"/rooms/{q(room.room_id)}/event/{q(event_id)}", room.alice)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("point", BEFORE_COMMIT + AFTER_COMMIT)
async def test_upgrade_killed_at_each_step(tmp_path: Path, engine: str, point: str) -> None:
    async with crash_server(tmp_path, engine) as server:
        await _scenario(server, point)


async def _scenario(server: CrashServer, point: str) -> None:
    # The upgrade fault points are not on room creation's path: set up and crash in one run.
    base_url = server.start(fault=point)
    async with aiohttp.ClientSession() as session:
        client = Client(session, base_url)
        room = await set_up_room(client)
        events_before = await server.probe.value("SELECT COUNT(*) FROM events")
        await crashing_request(
            client,
            "POST",
            f"/rooms/{q(room.room_id)}/upgrade",
            room.alice,
            {"new_version": NEW_VERSION},
        )
    assert await server.wait_killed() == SIGKILLED, server.log()[-3000:]

    base_url = server.start()
    # start-up recovery: nothing stays locked
    assert await server.probe.upgrading_rooms() == []
    async with aiohttp.ClientSession() as session:
        client = Client(session, base_url)
        await assert_nothing_lost(client, room)

        if point in BEFORE_COMMIT:
            assert await server.probe.room_status(room.room_id) == ("active", None)
            assert await server.probe.successor_rooms(room.room_id) == []
            assert await server.probe.room_ids("rooms") == {room.room_id}
            assert await server.probe.orphans() == {}
            assert await server.probe.value("SELECT COUNT(*) FROM events") == events_before
            assert await server.probe.value("SELECT COUNT(*) FROM room_upgrades") == 0
            tombstones = await server.probe.value(
                "SELECT COUNT(*) FROM events WHERE type = 'm.room.tombstone'"
            )
            assert tombstones == 0
            resolved = await client.ok("GET", f"/directory/room/{q(ALIAS)}")
            assert resolved["room_id"] == room.room_id
            # the lock taken before the crash was released by recovery, and recorded
            last = await server.probe.rows(
                "SELECT from_status, to_status FROM room_lifecycle_transitions "
                "WHERE room_id = ? ORDER BY id DESC LIMIT 1",
                room.room_id,
            )
            assert last == [("upgrading", "active")], last
            # the retry works
            reply = await client.ok(
                "POST",
                f"/rooms/{q(room.room_id)}/upgrade",
                room.alice,
                {"new_version": NEW_VERSION},
            )
            new_room = reply["replacement_room"]
        else:
            (new_room,) = await server.probe.room_ids("rooms") - {room.room_id}
            # repeating the request gives the same, durably stored answer
            reply = await client.ok(
                "POST",
                f"/rooms/{q(room.room_id)}/upgrade",
                room.alice,
                {"new_version": NEW_VERSION},
            )
            assert reply["replacement_room"] == new_room

        await assert_fully_upgraded(client, server, room, new_room)
        await assert_nothing_lost(client, room)
    server.stop()
    assert "Traceback" not in server.log(), server.log()[-4000:]
