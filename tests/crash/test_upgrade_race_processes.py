"""Two real ``homeserver run`` processes sharing one PostgreSQL database: 50 concurrent upgrade
requests for one room, split across the processes, produce exactly one replacement room.

The upgrade lock is a compare-and-set on the room row, so it holds across processes (an
in-memory lock, as in Synapse, would let each process upgrade once). From one user every request
gets the same ``replacement_room``; from 50 different admins exactly one upgrade runs: the
requests that waited for it get its ``replacement_room``, those that came after it committed 400
``M_BAD_STATE`` naming it ("in progress" only if a request kept finding it locked)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.crash.harness import CrashServer, crash_server
from tests.http_client import Client, q

REQUESTS = 50
OLD_VERSION = "10"  # before v12, so the creator can share power level 100
NEW_VERSION = "11"

pytestmark = pytest.mark.postgres


async def _start_pair(server: CrashServer, session: aiohttp.ClientSession) -> list[Client]:
    first = server.start()  # up (its database migrated) before the second process starts
    second = server.start_second_process()
    return [Client(session, first), Client(session, second)]


async def _register_many(clients: list[Client], names: list[str]) -> dict[str, str]:
    """Register ``names`` through both processes, a few at a time; user ID -> token."""
    limit = asyncio.Semaphore(6)

    async def one(i: int, name: str) -> tuple[str, str]:
        async with limit:
            return await clients[i % 2].register(name)

    return dict(await asyncio.gather(*(one(i, n) for i, n in enumerate(names))))


async def _upgrade(client: Client, room_id: str, token: str) -> tuple[int, Any]:
    return await client.call(
        "POST", f"/rooms/{q(room_id)}/upgrade", token, {"new_version": NEW_VERSION}
    )


async def _assert_one_successor(server: CrashServer, room_id: str, new_room: str) -> None:
    assert await server.probe.successor_rooms(room_id) == [new_room]
    assert await server.probe.room_status(room_id) == ("tombstoned", new_room)
    assert await server.probe.upgrading_rooms() == []
    tombstones = await server.probe.value(
        "SELECT COUNT(*) FROM events WHERE room_id = ? AND type = 'm.room.tombstone'", room_id
    )
    assert tombstones == 1
    recorded = await server.probe.rows(
        "SELECT new_room_id FROM room_upgrades WHERE old_room_id = ?", room_id
    )
    assert recorded == [(new_room,)]


async def test_same_user_across_two_processes_gets_one_replacement(tmp_path: Path) -> None:
    async with crash_server(tmp_path, "postgres") as server, aiohttp.ClientSession() as session:
        clients = await _start_pair(server, session)
        users = await _register_many(clients, ["alice", "bob"])
        alice, bob = (users[u] for u in sorted(users))
        room_id = (
            await clients[0].ok(
                "POST", "/createRoom", alice, {"preset": "public_chat", "room_version": OLD_VERSION}
            )
        )["room_id"]
        await clients[1].ok("POST", f"/join/{q(room_id)}", bob, {})

        replies = await asyncio.gather(
            *(_upgrade(clients[i % 2], room_id, alice) for i in range(REQUESTS))
        )

        assert all(status == 200 for status, _ in replies), replies
        replacements = {body["replacement_room"] for _, body in replies}
        assert len(replacements) == 1, replacements
        (new_room,) = replacements
        await _assert_one_successor(server, room_id, new_room)
        members = await clients[1].ok("GET", f"/rooms/{q(new_room)}/joined_members", bob)
        assert set(members["joined"]) == set(users)
    server.stop()
    assert "Traceback" not in server.log()


async def test_different_admins_across_two_processes_one_wins(tmp_path: Path) -> None:
    async with crash_server(tmp_path, "postgres") as server, aiohttp.ClientSession() as session:
        clients = await _start_pair(server, session)
        users = await _register_many(clients, [f"admin{i:02d}" for i in range(REQUESTS)])
        admins = sorted(users)
        creator = users[admins[0]]
        room_id = (
            await clients[0].ok(
                "POST",
                "/createRoom",
                creator,
                {
                    "preset": "public_chat",
                    "room_version": OLD_VERSION,
                    "power_level_content_override": {"users": dict.fromkeys(admins, 100)},
                },
            )
        )["room_id"]
        limit = asyncio.Semaphore(6)

        async def join(i: int, user_id: str) -> None:
            async with limit:
                await clients[i % 2].ok("POST", f"/join/{q(room_id)}", users[user_id], {})

        await asyncio.gather(*(join(i, u) for i, u in enumerate(admins[1:])))

        replies = await asyncio.gather(
            *(_upgrade(clients[i % 2], room_id, users[u]) for i, u in enumerate(admins))
        )

        winners = {body["replacement_room"] for status, body in replies if status == 200}
        assert len(winners) == 1, replies
        new_room = winners.pop()
        for status, body in replies:
            if status == 200:
                continue
            assert status == 400, (status, body)
            in_progress = "currently in progress" in body.get("error", "")
            already_done = body.get("errcode") == "M_BAD_STATE" and new_room in body.get(
                "error", ""
            )
            assert in_progress or already_done, body
        await _assert_one_successor(server, room_id, new_room)
        members = await clients[0].ok("GET", f"/rooms/{q(new_room)}/joined_members", creator)
        assert set(members["joined"]) == set(users)
    server.stop()
    assert "Traceback" not in server.log()
