"""Concurrent upgrade requests under the default ``rc_room_creation`` (burst 10): only the
request that starts an upgrade spends a room-creation token; the others share its outcome."""

from __future__ import annotations

import asyncio

from homeserver.errors import Codes
from tests.builders import build_room, create_room
from tests.harness import TestServer
from tests.rooms.upgrade.helpers import join, state_of, upgrade


async def test_thirty_concurrent_upgrades_by_the_creator_share_one_token(
    server: TestServer,
) -> None:
    hs = server.hs
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="public_chat", room_version="10")
    results = await asyncio.gather(*(upgrade(server, alice, room, "11") for _ in range(30)))
    assert [status for status, _ in results] == [200] * 30, results
    assert len({body["replacement_room"] for _, body in results}) == 1
    assert int(await hs.store.db.fetchval("SELECT COUNT(*) FROM room_upgrades")) == 1
    tombstones = await hs.store.db.fetchval(
        "SELECT COUNT(*) FROM events WHERE type = 'm.room.tombstone'"
    )
    assert int(tombstones) == 1
    # Asking again afterwards: the same answer, without a token either.
    for _ in range(12):
        status, body = await upgrade(server, alice, room, "11")
        assert (status, body) == (200, results[0][1])


async def test_other_admins_waiting_share_the_replacement(server: TestServer) -> None:
    alice, bob = await server.register("alice"), await server.register("bob")
    room = await create_room(
        server,
        alice,
        preset="public_chat",
        room_version="10",
        power_level_content_override={"users": {alice.user_id: 100, bob.user_id: 100}},
    )
    await join(server, room, bob)
    results = await asyncio.gather(
        *(upgrade(server, user, room, "11") for _ in range(5) for user in (alice, bob))
    )
    replacement = results[0][1]["replacement_room"]
    for status, body in results:
        # A request that reached the room only after the upgrade finished is not answered as
        # one that waited for it: bob then gets M_BAD_STATE naming the replacement.
        assert (status, body) in (
            (200, {"replacement_room": replacement}),
            (400, {**body, "errcode": Codes.BAD_STATE, "replacement_room": replacement}),
        ), body
    # A request after the upgrade by the admin who did not run it: refused, naming it.
    record = await server.hs.store.upgrades.get_upgrade(room)
    assert record is not None
    other = bob if record.upgrader == alice.user_id else alice
    status, body = await upgrade(server, other, room, "11")
    assert (status, body["errcode"], body["replacement_room"]) == (400, "M_BAD_STATE", replacement)


async def test_concurrent_requests_share_a_failure(server: TestServer) -> None:
    hs = server.hs
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="public_chat", room_version="10")
    before = await state_of(hs, room)
    attempts = 0

    async def broken(_room_id: str) -> None:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0)
        raise RuntimeError("injected")

    hs.room_upgrades.before_commit = broken
    results = await asyncio.gather(*(upgrade(server, alice, room, "11") for _ in range(8)))
    assert {status for status, _ in results} == {500}
    assert {body["error"] for _, body in results} == {"Room upgrade could not be completed"}
    assert 1 <= attempts < 8  # requests that arrived during an attempt shared its failure
    assert await state_of(hs, room) == before
    room_row = await hs.store.rooms.get_room(room)
    assert room_row is not None and room_row.status == "active"


async def test_starting_upgrades_of_many_rooms_is_still_rate_limited(
    server: TestServer,
) -> None:
    hs = server.hs
    alice = await server.register("alice")
    rooms = [
        await build_room(hs.store, hs.signer, alice.user_id, now=hs.clock()) for _ in range(12)
    ]
    results = await asyncio.gather(*(upgrade(server, alice, room, "11") for room in rooms))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 10 + [429] * 2, results
    assert {body["errcode"] for status, body in results if status == 429} == {"M_LIMIT_EXCEEDED"}
