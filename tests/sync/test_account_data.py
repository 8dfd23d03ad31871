"""Account data and tags on both engines: owner-only, stored, refused types, and delivered by
/sync (initially and incrementally)."""

from __future__ import annotations

import asyncio

from homeserver.app import Homeserver
from tests.builders import make_room
from tests.harness import TestServer
from tests.sync.helpers import sync


async def test_global_and_room_account_data(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    room_id = await make_room(hs, alice.user_id)
    base = f"/user/{alice.user_id}"
    status, body = await server.call("GET", f"{base}/account_data/org.example.x", alice)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    first = await sync(server, alice)

    status, _ = await server.call("PUT", f"{base}/account_data/org.example.x", alice, json={"a": 1})
    assert status == 200
    status, _ = await server.call(
        "PUT", f"{base}/rooms/{room_id}/account_data/org.example.y", alice, json={"b": 2}
    )
    assert status == 200
    assert await server.call("GET", f"{base}/account_data/org.example.x", alice) == (
        200,
        {"a": 1},
    )
    assert await server.call(
        "GET", f"{base}/rooms/{room_id}/account_data/org.example.y", alice
    ) == (200, {"b": 2})
    status, body = await server.call(
        "GET", f"{base}/rooms/{room_id}/account_data/org.example.x", alice
    )
    assert status == 404

    body = await sync(server, alice, since=first["next_batch"])
    assert {"type": "org.example.x", "content": {"a": 1}} in body["account_data"]["events"]
    room = body["rooms"]["join"][room_id]
    assert room["account_data"]["events"] == [{"type": "org.example.y", "content": {"b": 2}}]
    assert room["timeline"]["events"] == []
    # And on an initial sync.
    initial = await sync(server, alice)
    assert {"type": "org.example.x", "content": {"a": 1}} in initial["account_data"]["events"]
    assert {"type": "org.example.y", "content": {"b": 2}} in (
        initial["rooms"]["join"][room_id]["account_data"]["events"]
    )
    # Nothing new: nothing sent.
    again = await sync(server, alice, since=body["next_batch"])
    assert again["account_data"]["events"] == [] and again["rooms"]["join"] == {}


async def test_account_data_refusals(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await make_room(hs, alice.user_id)
    base = f"/user/{alice.user_id}"
    for method in ("GET", "PUT"):
        for path in (f"{base}/account_data/x.y", f"{base}/rooms/{room_id}/account_data/x.y"):
            status, body = await server.call(method, path, bob, json={})
            assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await server.call(
        "PUT", f"{base}/rooms/{room_id}/account_data/m.fully_read", alice, json={"event_id": "$x"}
    )
    assert status == 405
    status, body = await server.call("PUT", f"{base}/account_data/m.push_rules", alice, json={})
    assert status == 405
    status, body = await server.call("PUT", f"{base}/account_data/x.y", alice, json=[1])
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, body = await server.call("PUT", f"{base}/rooms/nope/account_data/x.y", alice, json={})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    # m.push_rules reads as the push rules.
    status, body = await server.call("GET", f"{base}/account_data/m.push_rules", alice)
    assert status == 200 and "override" in body["global"]


async def test_tags(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await make_room(hs, alice.user_id)
    tags = f"/user/{alice.user_id}/rooms/{room_id}/tags"
    assert await server.call("GET", tags, alice) == (200, {"tags": {}})
    first = await sync(server, alice)
    status, _ = await server.call("PUT", f"{tags}/m.favourite", alice, json={"order": 0.5})
    assert status == 200
    status, _ = await server.call("PUT", f"{tags}/u.work", alice, json={})
    assert status == 200
    assert await server.call("GET", tags, alice) == (
        200,
        {"tags": {"m.favourite": {"order": 0.5}, "u.work": {}}},
    )
    body = await sync(server, alice, since=first["next_batch"])
    events = body["rooms"]["join"][room_id]["account_data"]["events"]
    assert events == [
        {"type": "m.tag", "content": {"tags": {"m.favourite": {"order": 0.5}, "u.work": {}}}}
    ]
    status, _ = await server.call("DELETE", f"{tags}/u.work", alice)
    assert status == 200
    assert await server.call("GET", tags, alice) == (200, {"tags": {"m.favourite": {"order": 0.5}}})
    later = await sync(server, alice, since=body["next_batch"])
    assert later["rooms"]["join"][room_id]["account_data"]["events"] == [
        {"type": "m.tag", "content": {"tags": {"m.favourite": {"order": 0.5}}}}
    ]
    status, body = await server.call("PUT", f"{tags}/x", alice, json={"order": "first"})
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    for method in ("GET", "PUT", "DELETE"):
        path = tags if method == "GET" else f"{tags}/m.favourite"
        status, body = await server.call(method, path, bob, json={})
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


async def test_concurrent_tag_writes_keep_every_tag(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    room_id = await make_room(hs, alice.user_id)
    await asyncio.gather(
        *(
            hs.account_data.put_tag(alice.user_id, alice.user_id, room_id, f"u.t{i}", {})
            for i in range(6)
        )
    )
    status, body = await server.call("GET", f"/user/{alice.user_id}/rooms/{room_id}/tags", alice)
    assert status == 200 and set(body["tags"]) == {f"u.t{i}" for i in range(6)}
