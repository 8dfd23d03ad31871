"""Reading rooms on both engines: /messages pagination both ways with chained tokens, filters,
/context, /event, /members, /joined_members, /joined_rooms, and who may read what."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig
from tests.builders import generous_config, make_room
from tests.harness import TestServer as Server
from tests.harness import TestUser


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def send(server: Server, user: TestUser, room_id: str, body: str, txn: str) -> str:
    status, response = await server.call(
        "PUT", f"/rooms/{room_id}/send/m.room.message/{txn}", user, json={"body": body}
    )
    assert status == 200, response
    return response["event_id"]


async def page_all(
    server: Server, user: TestUser, room_id: str, direction: str, limit: int, **params: str
) -> tuple[list[dict[str, Any]], int]:
    """Follow ``end`` tokens until it is omitted; returns every event and the page count."""
    events: list[dict[str, Any]] = []
    query = {"dir": direction, "limit": str(limit), **params}
    pages = 0
    while True:
        status, body = await server.call("GET", f"/rooms/{room_id}/messages", user, params=query)
        assert status == 200, body
        pages += 1
        if "from" in query:
            assert body["start"] == query["from"]
        events.extend(body["chunk"])
        if "end" not in body:
            return events, pages
        query["from"] = body["end"]
        assert pages < 50


@pytest.mark.parametrize("version", ["1", "12"])
async def test_messages_paginate_both_ways(server: Server, version: str):
    alice = await server.register("alice")
    room_id = await make_room(server.hs, alice.user_id, version=version)
    sent = [await send(server, alice, room_id, f"m{i}", f"t{i}") for i in range(7)]
    backwards, pages = await page_all(server, alice, room_id, "b", 3)
    ids = [e["event_id"] for e in backwards]
    # Newest first: the 7 messages, then the 5 genesis events.
    assert ids[:7] == list(reversed(sent))
    assert len(ids) == 12 and len(set(ids)) == 12
    assert backwards[-1]["type"] == "m.room.create"
    assert pages == 4
    forwards, _ = await page_all(server, alice, room_id, "f", 5)
    assert [e["event_id"] for e in forwards] == list(reversed(ids))
    # Client format.
    message = backwards[0]
    assert message["content"] == {"body": "m6"}
    assert message["room_id"] == room_id and message["sender"] == alice.user_id
    assert "age" in message["unsigned"] and "hashes" not in message


async def test_messages_tokens_from_to_and_limit(server: Server):
    alice = await server.register("alice")
    room_id = await make_room(server.hs, alice.user_id)
    await send(server, alice, room_id, "a", "1")
    status, body = await server.call(
        "GET", f"/rooms/{room_id}/messages", alice, params={"dir": "b", "limit": "1"}
    )
    assert status == 200 and len(body["chunk"]) == 1 and "end" in body
    # A later message is not seen paginating backwards from the earlier position.
    later = await send(server, alice, room_id, "b", "2")
    status, older = await server.call(
        "GET", f"/rooms/{room_id}/messages", alice, params={"dir": "b", "from": body["start"]}
    )
    assert later not in [e["event_id"] for e in older["chunk"]]
    # Forwards from it finds exactly the later message; `to` bounds a page.
    status, newer = await server.call(
        "GET", f"/rooms/{room_id}/messages", alice, params={"dir": "f", "from": body["start"]}
    )
    assert [e["event_id"] for e in newer["chunk"]] == [later]
    assert "end" not in newer
    status, bounded = await server.call(
        "GET",
        f"/rooms/{room_id}/messages",
        alice,
        params={"dir": "b", "to": body["end"]},
    )
    assert [e["content"]["body"] for e in bounded["chunk"]] == ["b", "a"]
    # Defaults: no dir means backwards; no limit means 10.
    status, default = await server.call("GET", f"/rooms/{room_id}/messages", alice)
    assert status == 200 and len(default["chunk"]) == 7


async def test_messages_filter(server: Server):
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(server.hs, alice.user_id)
    await server.call("POST", f"/rooms/{room_id}/join", bob, json={})
    for i in range(3):
        await send(server, alice, room_id, f"a{i}", f"a{i}")
        await send(server, bob, room_id, f"b{i}", f"b{i}")
    only_bob = json.dumps({"senders": [bob.user_id], "types": ["m.room.*"]})
    events, _ = await page_all(server, alice, room_id, "b", 2, filter=only_bob)
    assert [e["content"].get("body") for e in events] == ["b2", "b1", "b0", None]
    no_messages = json.dumps({"not_types": ["m.room.message"], "lazy_load_members": True})
    status, body = await server.call(
        "GET", f"/rooms/{room_id}/messages", alice, params={"filter": no_messages, "limit": "3"}
    )
    assert status == 200
    assert all(e["type"] != "m.room.message" for e in body["chunk"])
    assert {e["state_key"] for e in body["state"]} <= {alice.user_id, bob.user_id}
    assert body["state"] and all(e["type"] == "m.room.member" for e in body["state"])


async def test_messages_bad_params(server: Server):
    alice = await server.register("alice")
    room_id = await make_room(server.hs, alice.user_id)
    path = f"/rooms/{room_id}/messages"
    for params in (
        {"dir": "x"},
        {"from": "garbage"},
        {"from": "s-1"},
        {"to": "t5"},
        {"limit": "many"},
        {"filter": "{not json"},
        {"filter": "[1]"},
        {"filter": '{"types": "m.room.message"}'},
    ):
        status, body = await server.call("GET", path, alice, params=params)
        assert status == 400, (params, body)
        assert body["errcode"] == "M_INVALID_PARAM"
    status, body = await server.call("GET", path, alice, params={"limit": "5000"})
    assert status == 200
    status, body = await server.call("GET", "/rooms/!unknown:test.example/messages", alice)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await server.call("GET", "/rooms/bad/messages", alice)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


async def test_who_may_read(server: Server):
    alice, bob, eve = [await server.register(n) for n in ("alice", "bob", "eve")]
    room_id = await make_room(server.hs, alice.user_id)
    await server.call("POST", f"/rooms/{room_id}/join", bob, json={})
    before = await send(server, alice, room_id, "before", "1")
    await server.call("POST", f"/rooms/{room_id}/leave", bob, json={})
    after = await send(server, alice, room_id, "after", "2")
    # A stranger: 403 everywhere.
    for path in (
        f"/rooms/{room_id}/messages",
        f"/rooms/{room_id}/members",
        f"/rooms/{room_id}/joined_members",
        f"/rooms/{room_id}/event/{before}",
        f"/rooms/{room_id}/context/{before}",
    ):
        status, body = await server.call("GET", path, eve)
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), path
        assert body["error"] == "You aren't a member of the room"
    # A former member reads up to their leave.
    events, _ = await page_all(server, bob, room_id, "b", 100)
    ids = [e["event_id"] for e in events]
    assert before in ids and after not in ids
    assert (await server.call("GET", f"/rooms/{room_id}/event/{before}", bob))[0] == 200
    # An event after the leave is not theirs to see: not found (as Synapse).
    status, body = await server.call("GET", f"/rooms/{room_id}/event/{after}", bob)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    # world_readable lets anyone read.
    status, body = await server.call(
        "PUT",
        f"/rooms/{room_id}/state/m.room.history_visibility",
        alice,
        json={"history_visibility": "world_readable"},
    )
    assert status == 200, body
    status, body = await server.call("GET", f"/rooms/{room_id}/messages", eve)
    assert status == 200 and body["chunk"]


async def test_event_and_context(server: Server):
    alice = await server.register("alice")
    room_id = await make_room(server.hs, alice.user_id)
    ids = [await send(server, alice, room_id, f"m{i}", f"t{i}") for i in range(6)]
    status, body = await server.call("GET", f"/rooms/{room_id}/event/{ids[2]}", alice)
    assert status == 200 and body["event_id"] == ids[2] and body["content"] == {"body": "m2"}
    status, body = await server.call(
        "GET", f"/rooms/{room_id}/context/{ids[2]}", alice, params={"limit": "4"}
    )
    assert status == 200, body
    assert body["event"]["event_id"] == ids[2]
    assert [e["event_id"] for e in body["events_before"]] == [ids[1], ids[0]]
    assert [e["event_id"] for e in body["events_after"]] == [ids[3], ids[4]]
    assert any(e["type"] == "m.room.create" for e in body["state"])
    # The tokens continue the timeline on either side.
    status, older = await server.call(
        "GET", f"/rooms/{room_id}/messages", alice, params={"from": body["start"], "limit": "1"}
    )
    assert older["chunk"][0]["type"] == "m.room.history_visibility"
    status, newer = await server.call(
        "GET", f"/rooms/{room_id}/messages", alice, params={"from": body["end"], "dir": "f"}
    )
    assert [e["event_id"] for e in newer["chunk"]] == [ids[5]]
    # Unknown events, events of other rooms, bad IDs.
    other_room = await make_room(server.hs, alice.user_id)
    for path, expected in (
        (f"/rooms/{room_id}/event/$unknown", 404),
        (f"/rooms/{other_room}/event/{ids[0]}", 404),
        (f"/rooms/{room_id}/context/$unknown", 404),
        (f"/rooms/{room_id}/event/notanid", 400),
        (f"/rooms/{room_id}/context/notanid", 400),
    ):
        status, body = await server.call("GET", path, alice)
        assert status == expected, (path, body)


async def test_members_and_joined(server: Server):
    alice, bob, carol = [await server.register(n) for n in ("alice", "bob", "carol")]
    await server.hs.store.profiles.set_field(bob.user_id, "displayname", "Bob")
    room_id = await make_room(server.hs, alice.user_id)
    await server.call("POST", f"/rooms/{room_id}/join", bob, json={})
    status, before_invite = await server.call(
        "GET", f"/rooms/{room_id}/messages", alice, params={"limit": "1"}
    )
    await server.call("POST", f"/rooms/{room_id}/invite", alice, json={"user_id": carol.user_id})
    status, body = await server.call("GET", f"/rooms/{room_id}/members", alice)
    assert status == 200
    assert {e["state_key"]: e["content"]["membership"] for e in body["chunk"]} == {
        alice.user_id: "join",
        bob.user_id: "join",
        carol.user_id: "invite",
    }
    status, body = await server.call(
        "GET", f"/rooms/{room_id}/members", alice, params={"membership": "invite"}
    )
    assert [e["state_key"] for e in body["chunk"]] == [carol.user_id]
    status, body = await server.call(
        "GET", f"/rooms/{room_id}/members", alice, params={"not_membership": "invite"}
    )
    assert {e["state_key"] for e in body["chunk"]} == {alice.user_id, bob.user_id}
    status, body = await server.call(
        "GET", f"/rooms/{room_id}/members", alice, params={"at": before_invite["start"]}
    )
    assert {e["state_key"] for e in body["chunk"]} == {alice.user_id, bob.user_id}
    status, body = await server.call(
        "GET", f"/rooms/{room_id}/members", alice, params={"membership": "bogus"}
    )
    assert status == 400
    status, body = await server.call("GET", f"/rooms/{room_id}/joined_members", alice)
    assert status == 200
    assert body == {
        "joined": {
            alice.user_id: {"display_name": None, "avatar_url": None},
            bob.user_id: {"display_name": "Bob", "avatar_url": None},
        }
    }
    status, body = await server.call("GET", "/joined_rooms", bob)
    assert (status, body) == (200, {"joined_rooms": [room_id]})
    status, body = await server.call("GET", "/joined_rooms", carol)
    assert (status, body) == (200, {"joined_rooms": []})
