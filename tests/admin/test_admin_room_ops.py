"""The admin room tools: forward extremities, block, join, make_room_admin, messages and
context seen by an admin, timestamp_to_event (admin and client), fetch_event and the rooms'
database sizes — Synapse's keys and units (ms timestamps, byte sizes)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from homeserver.config import HomeserverConfig
from tests.admin.helpers import V1
from tests.builders import create_room, generous_config
from tests.harness import TestServer, TestUser

_TXN = itertools.count()


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def _say(server: TestServer, user: TestUser, room: str, text: str) -> str:
    status, body = await server.call(
        "PUT",
        f"/rooms/{room}/send/m.room.message/t{next(_TXN)}",
        user,
        json={"msgtype": "m.text", "body": text},
    )
    assert status == 200, body
    return str(body["event_id"])


async def test_extremities_block_fetch_event_and_sizes(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    room = await create_room(server, alice, name="R", room_alias_name="ops")
    last = await _say(server, alice, room, "hello")
    # A second extremity, as a fork would leave (an older event of the room).
    create = await server.hs.store.state.get_current_state_event(room, "m.room.create")
    assert create is not None
    async with server.hs.store.db.transaction("test_fork") as txn:
        await txn.execute(
            "INSERT INTO event_forward_extremities (room_id, event_id) VALUES (?, ?)"
            " ON CONFLICT DO NOTHING",
            room,
            create.event_id,
        )
    for ident in (room, "%23ops:test.example"):
        status, body = await server.call("GET", f"{V1}/rooms/{ident}/forward_extremities", admin)
        assert status == 200, body
        assert body["count"] == 2 and len(body["results"]) == 2
        newest = body["results"][-1]
        assert set(newest) == {"event_id", "state_group", "depth", "received_ts"}
        assert newest["event_id"] == last and isinstance(newest["state_group"], int)
        assert newest["received_ts"] > 1_000_000_000_000  # milliseconds
    status, body = await server.call("DELETE", f"{V1}/rooms/{room}/forward_extremities", admin)
    assert (status, body) == (200, {"deleted": 1})
    status, body = await server.call("GET", f"{V1}/rooms/{room}/forward_extremities", admin)
    assert [r["event_id"] for r in body["results"]] == [last]
    # The room still works: the next event builds on the kept extremity.
    await _say(server, alice, room, "after the repair")
    status, body = await server.call(
        "GET", f"{V1}/rooms/!unknown:test.example/forward_extremities", admin
    )
    assert status == 404

    # Block: a room we do not know may be blocked too.
    for target in (room, "!elsewhere:remote.example"):
        status, body = await server.call("GET", f"{V1}/rooms/{target}/block", admin)
        assert (status, body) == (200, {"block": False})
        status, body = await server.call(
            "PUT", f"{V1}/rooms/{target}/block", admin, json={"block": True}
        )
        assert (status, body) == (200, {"block": True})
        status, body = await server.call("GET", f"{V1}/rooms/{target}/block", admin)
        assert (status, body) == (200, {"block": True, "user_id": admin.user_id})
    bob = await server.register("bob")
    status, body = await server.call("POST", f"/rooms/{room}/join", bob, json={})
    assert status == 403, body
    status, body = await server.call(
        "PUT", f"{V1}/rooms/{room}/block", admin, json={"block": False}
    )
    assert (status, body) == (200, {"block": False})
    status, body = await server.call("GET", f"{V1}/rooms/{room}/block", admin)
    assert body == {"block": False}
    for bad in ({"block": "yes"}, {}, {"block": None}):
        status, body = await server.call("PUT", f"{V1}/rooms/{room}/block", admin, json=bad)
        assert status == 400 and body["errcode"] == "M_BAD_JSON", body
    status, body = await server.call("GET", f"{V1}/rooms/not-a-room/block", admin)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"

    # fetch_event: any event, in federation format, with its ID.
    status, body = await server.call("GET", f"{V1}/fetch_event/{last}", admin)
    assert status == 200, body
    event = body["event"]
    assert event["event_id"] == last and event["content"]["body"] == "hello"
    assert {"auth_events", "prev_events", "hashes", "signatures", "depth"} <= set(event)
    status, body = await server.call("GET", f"{V1}/fetch_event/$nothing", admin)
    assert status == 404

    status, body = await server.call("GET", f"{V1}/statistics/database/rooms", admin)
    assert status == 200, body
    (entry,) = body["rooms"]
    assert entry["room_id"] == room and entry["estimated_size"] > 1000  # bytes


async def test_join_and_make_room_admin(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    public = await create_room(server, alice, preset="public_chat", room_alias_name="pub")
    status, body = await server.call(
        "POST", f"{V1}/join/%23pub:test.example", admin, json={"user_id": bob.user_id}
    )
    assert (status, body) == (200, {"room_id": public})
    members = await server.hs.store.state.get_current_members(public, "join")
    assert bob.user_id in members
    # A private room: the admin may not invite there (not a member): refused, nothing joined.
    private = await create_room(server, alice)
    status, body = await server.call(
        "POST", f"{V1}/join/{private}", admin, json={"user_id": carol.user_id}
    )
    assert status == 403, body
    assert carol.user_id not in await server.hs.store.state.get_current_members(private, "join")
    for bad, code in (
        ({"user_id": "@x:elsewhere.example"}, 400),
        ({"user_id": "@ghost:test.example"}, 404),
        ({}, 400),
        ({"user_id": 5}, 400),
    ):
        status, body = await server.call("POST", f"{V1}/join/{public}", admin, json=bad)
        assert status == code, (bad, body)

    # make_room_admin: alice (the room's most powerful local member) promotes carol and invites
    # her, the room being private.
    status, body = await server.call(
        "POST", f"{V1}/rooms/{private}/make_room_admin", admin, json={"user_id": carol.user_id}
    )
    assert (status, body) == (200, {}), body
    levels = await server.hs.store.state.get_current_state_event(private, "m.room.power_levels")
    assert levels is not None and levels.content["users"][carol.user_id] == 100
    assert levels.sender == alice.user_id
    invite = await server.hs.store.state.get_current_state_event(
        private, "m.room.member", carol.user_id
    )
    assert invite is not None and invite.membership == "invite"
    status, body = await server.call(
        "POST", f"{V1}/rooms/!unknown:test.example/make_room_admin", admin, json={}
    )
    assert status == 400

    # --- messages context and timestamp to event ---
    eve = await server.register("eve")
    room = await create_room(server, alice)  # the admin is not a member
    first = await _say(server, alice, room, "one")
    second = await _say(server, alice, room, "two")
    status, body = await server.call("GET", f"{V1}/rooms/{room}/messages", admin)
    assert status == 200, body
    assert {"chunk", "start"} <= set(body)
    bodies = [e["content"].get("body") for e in body["chunk"] if e["type"] == "m.room.message"]
    assert bodies == ["two", "one"]  # dir=b by default
    status, body = await server.call(
        "GET", f"{V1}/rooms/{room}/messages", admin, params={"dir": "f", "limit": "2"}
    )
    assert status == 200 and body["chunk"][0]["type"] == "m.room.create" and "end" in body
    status, body = await server.call("GET", f"{V1}/rooms/{room}/context/{second}", admin)
    assert status == 200, body
    assert body["event"]["event_id"] == second
    assert body["events_before"][0]["event_id"] == first
    # A non-member client may not read it.
    status, _ = await server.call("GET", f"/rooms/{room}/messages", eve)
    assert status == 403

    event = await server.hs.store.events.get_event(second)
    assert event is not None
    ts = event.origin_server_ts
    status, body = await server.call(
        "GET", f"{V1}/rooms/{room}/timestamp_to_event", admin, params={"ts": str(ts), "dir": "b"}
    )
    assert (status, body) == (200, {"event_id": second, "origin_server_ts": ts})
    status, body = await server.call(
        "GET",
        "/_matrix/client/v1/rooms/" + room + "/timestamp_to_event",
        alice,
        params={"ts": str(ts + 3_600_000), "dir": "b"},
    )
    assert status == 200 and body["event_id"] == second
    status, body = await server.call(
        "GET",
        "/_matrix/client/v1/rooms/" + room + "/timestamp_to_event",
        alice,
        params={"ts": str(ts + 3_600_000), "dir": "f"},
    )
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    # Visibility applies to clients: eve is not in the room.
    status, body = await server.call(
        "GET",
        "/_matrix/client/v1/rooms/" + room + "/timestamp_to_event",
        eve,
        params={"ts": str(ts)},
    )
    assert status == 403, body
    for params in ({}, {"ts": "x"}, {"ts": "1", "dir": "up"}, {"ts": "-5"}):
        status, body = await server.call(
            "GET", f"{V1}/rooms/{room}/timestamp_to_event", admin, params=params
        )
        assert status == 400, (params, body)
    status, _ = await server.call(
        "GET", "/_matrix/client/v1/rooms/" + room + "/timestamp_to_event", params={"ts": "1"}
    )
    assert status == 401
