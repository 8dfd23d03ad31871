"""The whole client flow through the HTTP API (createRoom, invite, join, send), seen by /sync.
Skipped while the room endpoints are not served."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness import TestServer
from tests.sync.helpers import sync, timeline_bodies


async def test_create_invite_join_talk(server: TestServer):
    alice = await server.register("alice")
    bob = await server.register("bob")
    bob_first = await sync(server, bob)
    status, created = await server.call(
        "POST",
        "/createRoom",
        alice,
        json={"preset": "private_chat", "invite": [bob.user_id], "name": "Chat"},
    )
    if status == 404:
        pytest.skip("createRoom is not served yet")
    assert status == 200, created
    room_id = created["room_id"]

    invited = await sync(server, bob, since=bob_first["next_batch"])
    stripped = invited["rooms"]["invite"][room_id]["invite_state"]["events"]
    assert "m.room.create" in {e["type"] for e in stripped}
    alice_first = await sync(server, alice)
    assert room_id in alice_first["rooms"]["join"]

    status, body = await server.call("POST", f"/rooms/{room_id}/join", bob, json={})
    assert status == 200, body
    joined = await sync(server, bob, since=invited["next_batch"])
    assert room_id in joined["rooms"]["join"]
    alice_next = await sync(server, alice, since=alice_first["next_batch"])
    members = [
        e
        for e in alice_next["rooms"]["join"][room_id]["timeline"]["events"]
        if e["type"] == "m.room.member"
    ]
    assert members[-1]["state_key"] == bob.user_id

    poll = asyncio.create_task(sync(server, bob, since=joined["next_batch"], timeout="10000"))
    await asyncio.wait_for(server.hs.notifier.parked(), 10)
    status, body = await server.call(
        "PUT",
        f"/rooms/{room_id}/send/m.room.message/txn1",
        alice,
        json={"msgtype": "m.text", "body": "hello bob"},
    )
    assert status == 200, body
    woke = await asyncio.wait_for(poll, 30)
    assert timeline_bodies(woke, room_id) == ["hello bob"]
    assert "transaction_id" not in woke["rooms"]["join"][room_id]["timeline"]["events"][0].get(
        "unsigned", {}
    )
    own = await sync(server, alice, since=alice_next["next_batch"])
    sent = own["rooms"]["join"][room_id]["timeline"]["events"][-1]
    assert sent["unsigned"]["transaction_id"] == "txn1"
