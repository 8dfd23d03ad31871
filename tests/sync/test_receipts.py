"""Receipts and read markers on both engines: stored, shown in /sync's ephemeral section to the
room's members (private receipts to their owner only), m.fully_read as room account data."""

from __future__ import annotations

from typing import Any

from homeserver.app import Homeserver
from tests.builders import join, make_room, say
from tests.harness import TestServer
from tests.sync.helpers import sync


def _receipts(body: dict[str, Any], room_id: str) -> dict[str, Any]:
    room = body["rooms"]["join"].get(room_id, {})
    content: dict[str, Any] = {}
    for event in room.get("ephemeral", {}).get("events", []):
        if event["type"] == "m.receipt":
            content.update(event["content"])
    return content


async def test_receipts_reach_members(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, bob.user_id)
    message = await say(hs, room_id, alice.user_id, "read me")
    first_alice = await sync(server, alice)
    first_bob = await sync(server, bob)

    status, body = await server.call(
        "POST", f"/rooms/{room_id}/receipt/m.read/{message.event_id}", bob, json={}
    )
    assert status == 200, body
    status, body = await server.call(
        "POST",
        f"/rooms/{room_id}/receipt/m.read.private/{message.event_id}",
        bob,
        json={"thread_id": "main"},
    )
    assert status == 200, body

    seen_by_alice = _receipts(await sync(server, alice, since=first_alice["next_batch"]), room_id)
    assert set(seen_by_alice[message.event_id]) == {"m.read"}
    read = seen_by_alice[message.event_id]["m.read"][bob.user_id]
    assert isinstance(read["ts"], int) and "thread_id" not in read
    bob_body = await sync(server, bob, since=first_bob["next_batch"])
    seen_by_bob = _receipts(bob_body, room_id)
    assert seen_by_bob[message.event_id]["m.read.private"][bob.user_id]["thread_id"] == "main"
    # On an initial sync too, and not again once seen.
    assert bob.user_id in _receipts(await sync(server, alice), room_id)[message.event_id]["m.read"]
    assert _receipts(await sync(server, bob, since=bob_body["next_batch"]), room_id) == {}


async def test_read_markers(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    room_id = await make_room(hs, alice.user_id)
    message = await say(hs, room_id, alice.user_id, "hello")
    first = await sync(server, alice)
    status, body = await server.call(
        "POST",
        f"/rooms/{room_id}/read_markers",
        alice,
        json={"m.fully_read": message.event_id, "m.read": message.event_id},
    )
    assert status == 200, body
    body = await sync(server, alice, since=first["next_batch"])
    room = body["rooms"]["join"][room_id]
    assert {"type": "m.fully_read", "content": {"event_id": message.event_id}} in (
        room["account_data"]["events"]
    )
    assert alice.user_id in _receipts(body, room_id)[message.event_id]["m.read"]
    status, stored = await server.call(
        "GET", f"/user/{alice.user_id}/rooms/{room_id}/account_data/m.fully_read", alice
    )
    assert (status, stored) == (200, {"event_id": message.event_id})
    # The receipt endpoint takes m.fully_read too.
    status, _ = await server.call(
        "POST", f"/rooms/{room_id}/receipt/m.fully_read/{message.event_id}", alice, json={}
    )
    assert status == 200


async def test_receipt_errors(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    carol = await server.register("carol")
    room_id = await make_room(hs, alice.user_id)
    message = await say(hs, room_id, alice.user_id, "hello")
    other_room = await make_room(hs, alice.user_id)
    base = f"/rooms/{room_id}/receipt"
    cases = [
        (alice, f"{base}/m.bogus/{message.event_id}", {}, 400),
        (alice, f"{base}/m.read/$unknown", {}, 404),
        (alice, f"/rooms/{other_room}/receipt/m.read/{message.event_id}", {}, 404),
        (alice, f"{base}/m.read/{message.event_id}", {"thread_id": 5}, 400),
        (alice, f"{base}/m.fully_read/{message.event_id}", {"thread_id": "main"}, 400),
        (carol, f"{base}/m.read/{message.event_id}", {}, 403),
        (alice, f"/rooms/{room_id}/read_markers", {"m.fully_read": 1}, 400),
        (carol, f"/rooms/{room_id}/read_markers", {"m.read": message.event_id}, 403),
    ]
    for user, path, json, expected in cases:
        status, body = await server.call("POST", path, user, json=json)
        assert status == expected, (path, json, body)
        assert "errcode" in body
