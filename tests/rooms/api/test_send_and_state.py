"""Sending messages (idempotent per transaction ID) and state on both engines; the tombstone
lifecycle transition; bad input as 4xx."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote

import pytest

from homeserver.config import HomeserverConfig
from tests.builders import generous_config, make_room
from tests.harness import TestServer as Server


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def count_events(server: Server, room_id: str, event_type: str) -> int:
    return int(
        await server.hs.store.db.fetchval(
            "SELECT COUNT(*) FROM events WHERE room_id = ? AND type = ?", room_id, event_type
        )
    )


@pytest.mark.parametrize("version", ["1", "11", "12"])
async def test_send_is_idempotent_per_txn_id(server: Server, version: str):
    alice = await server.register("alice")
    room_id = await make_room(server.hs, alice.user_id, version=version)
    path = f"/rooms/{room_id}/send/m.room.message/txn1"
    status, first = await server.call("PUT", path, alice, json={"msgtype": "m.text", "body": "hi"})
    assert status == 200, first
    status, again = await server.call("PUT", path, alice, json={"msgtype": "m.text", "body": "hi"})
    assert status == 200 and again == first
    assert await count_events(server, room_id, "m.room.message") == 1
    status, other = await server.call(
        "PUT", f"/rooms/{room_id}/send/m.room.message/txn2", alice, json={"body": "x"}
    )
    assert status == 200 and other["event_id"] != first["event_id"]
    # The same txn ID from another device of the same user is another request.
    other_device = await server.login_device(alice, "OTHERDEVICE")
    status, from_other = await server.call("PUT", path, other_device, json={"body": "hi"})
    assert status == 200 and from_other["event_id"] != first["event_id"]
    event = await server.hs.store.events.get_event(first["event_id"])
    assert event is not None and event.content == {"msgtype": "m.text", "body": "hi"}


async def test_concurrent_retries_make_one_event(server: Server):
    alice = await server.register("alice")
    room_id = await make_room(server.hs, alice.user_id)
    path = f"/rooms/{room_id}/send/m.room.message/same"
    results = await asyncio.gather(
        *(server.call("PUT", path, alice, json={"body": "once"}) for _ in range(4))
    )
    assert {status for status, _ in results} == {200}
    assert len({body["event_id"] for _, body in results}) == 1
    assert await count_events(server, room_id, "m.room.message") == 1


async def test_send_refusals(server: Server):
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(server.hs, alice.user_id, version="10")
    send = f"/rooms/{room_id}/send/m.room.message/"
    status, body = await server.call("PUT", send + "a", bob, json={"body": "not joined"})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await server.call(
        "PUT", "/rooms/!unknown:test.example/send/m.room.message/a", alice, json={}
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await server.call("PUT", "/rooms/nope/send/m.room.message/a", alice, json={})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await server.call("PUT", send + "b", alice, data="{not json")
    assert (status, body["errcode"]) == (400, "M_NOT_JSON")
    status, body = await server.call("PUT", send + "c", alice, json=["a list"])
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    # Floats are not canonical JSON in v6+ rooms.
    status, body = await server.call("PUT", send + "d", alice, json={"n": 1.5})
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, body = await server.call("PUT", send + "e", alice, json={"n": 2**60})
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, body = await server.call(
        "PUT",
        send + "f",
        alice,
        data='{"body": "\\ud800"}',
        headers={"Content-Type": "application/json"},
    )
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, body = await server.call("PUT", send + "g", alice, json={"body": "x" * 70_000})
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")
    status, body = await server.call("PUT", send + "h", alice, json={"body": "x" * 65_400})
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")
    status, body = await server.call(
        "PUT", f"/rooms/{room_id}/send/{'t' * 300}/i", alice, json={"body": "x"}
    )
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    assert await count_events(server, room_id, "m.room.message") == 0


async def test_floats_allowed_in_old_rooms(server: Server):
    alice = await server.register("alice")
    room_id = await make_room(server.hs, alice.user_id, version="5")
    status, body = await server.call(
        "PUT", f"/rooms/{room_id}/send/m.custom/t", alice, json={"n": 1.5}
    )
    assert status == 200, body


async def test_message_rate_limit(server: Server):
    from homeserver.config.ratelimiting import RateLimit
    from homeserver.ratelimit import TokenBucketLimiter

    alice = await server.register("alice")
    room_id = await make_room(server.hs, alice.user_id)
    server.hs.ratelimiters.message = TokenBucketLimiter(RateLimit(0.001, 1))
    send = f"/rooms/{room_id}/send/m.room.message/"
    assert (await server.call("PUT", send + "1", alice, json={}))[0] == 200
    # A retry of the same transaction is not a new action.
    assert (await server.call("PUT", send + "1", alice, json={}))[0] == 200
    status, body = await server.call("PUT", send + "2", alice, json={})
    assert status == 429 and body["errcode"] == "M_LIMIT_EXCEEDED"


@pytest.mark.parametrize("version", ["4", "12"])
async def test_state_put_and_get(server: Server, version: str):
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(server.hs, alice.user_id, version=version)
    status, body = await server.call(
        "PUT", f"/rooms/{room_id}/state/m.room.name", alice, json={"name": "Room"}
    )
    assert status == 200, body
    name_id = body["event_id"]
    for suffix in ("", "/"):
        status, body = await server.call(
            "GET", f"/rooms/{room_id}/state/m.room.name{suffix}", alice
        )
        assert (status, body) == (200, {"name": "Room"})
    # The same state again is not a new event.
    status, body = await server.call(
        "PUT", f"/rooms/{room_id}/state/m.room.name/", alice, json={"name": "Room"}
    )
    assert (status, body) == (200, {"event_id": name_id})
    # State keys may hold '/'.
    key = quote("a/b c", safe="")
    status, body = await server.call(
        "PUT", f"/rooms/{room_id}/state/org.example.thing/{key}", alice, json={"v": 1}
    )
    assert status == 200, body
    status, body = await server.call(
        "GET", f"/rooms/{room_id}/state/org.example.thing/{key}", alice
    )
    assert (status, body) == (200, {"v": 1})
    assert await server.hs.store.state.get_current_state_event(
        room_id, "org.example.thing", "a/b c"
    )
    status, body = await server.call("GET", f"/rooms/{room_id}/state", alice)
    assert status == 200
    types = {(e["type"], e["state_key"]) for e in body}
    assert ("m.room.name", "") in types and ("m.room.member", alice.user_id) in types
    assert all("event_id" in e and "room_id" in e for e in body)
    # Absent state: 404.
    status, body = await server.call("GET", f"/rooms/{room_id}/state/m.room.topic", alice)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    # Bob never joined: 403; unknown room: 404; a bad room ID: 400.
    status, body = await server.call("GET", f"/rooms/{room_id}/state", bob)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await server.call("GET", f"/rooms/{room_id}/state/m.room.name", bob)
    assert status == 403
    status, body = await server.call("GET", "/rooms/!unknown:test.example/state", alice)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await server.call("GET", "/rooms/unknown/state", alice)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    # Bob joins but is below state_default.
    assert (await server.call("POST", f"/rooms/{room_id}/join", bob, json={}))[0] == 200
    status, body = await server.call(
        "PUT", f"/rooms/{room_id}/state/m.room.topic", bob, json={"topic": "no"}
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await server.call(
        "PUT", f"/rooms/{room_id}/state/m.room.name", alice, data="[1]"
    )
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")


async def test_former_member_reads_state_as_of_leaving(server: Server):
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(server.hs, alice.user_id)
    await server.call("PUT", f"/rooms/{room_id}/state/m.room.name", alice, json={"name": "One"})
    assert (await server.call("POST", f"/rooms/{room_id}/join", bob, json={}))[0] == 200
    assert (await server.call("POST", f"/rooms/{room_id}/leave", bob, json={}))[0] == 200
    await server.call("PUT", f"/rooms/{room_id}/state/m.room.name", alice, json={"name": "Two"})
    status, body = await server.call("GET", f"/rooms/{room_id}/state/m.room.name", bob)
    assert (status, body) == (200, {"name": "One"})
    status, body = await server.call("GET", f"/rooms/{room_id}/state/m.room.name", alice)
    assert (status, body) == (200, {"name": "Two"})


@pytest.mark.parametrize("version", ["10", "12"])
async def test_tombstone_moves_lifecycle(server: Server, version: str):
    alice = await server.register("alice")
    room_id = await make_room(server.hs, alice.user_id, version=version)
    replacement = "!new:test.example"
    status, body = await server.call(
        "PUT",
        f"/rooms/{room_id}/state/m.room.tombstone",
        alice,
        json={"body": "moved", "replacement_room": replacement},
    )
    assert status == 200, body
    room = await server.hs.store.rooms.get_room(room_id)
    assert room is not None
    assert room.status == "tombstoned"
    assert room.replacement_room_id == replacement
    history = await server.hs.store.rooms.get_transitions(room_id)
    assert [(t.from_status, t.to_status) for t in history] == [
        (None, "active"),
        ("active", "tombstoned"),
    ]
    assert history[-1].actor == "system"
    assert history[-1].reason == f"tombstone sent by {alice.user_id}"
    # A later tombstone is accepted as an event; the room stays tombstoned.
    status, body = await server.call(
        "PUT", f"/rooms/{room_id}/state/m.room.tombstone", alice, json={"body": "again"}
    )
    assert status == 200, body
    assert len(await server.hs.store.rooms.get_transitions(room_id)) == 2


async def test_refused_tombstone_leaves_room_active(server: Server):
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(server.hs, alice.user_id)
    assert (await server.call("POST", f"/rooms/{room_id}/join", bob, json={}))[0] == 200
    status, body = await server.call(
        "PUT", f"/rooms/{room_id}/state/m.room.tombstone", bob, json={"body": "x"}
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    room = await server.hs.store.rooms.get_room(room_id)
    assert room is not None and room.status == "active"
    assert len(await server.hs.store.rooms.get_transitions(room_id)) == 1


async def test_tombstone_refused_during_upgrade(server: Server):
    alice = await server.register("alice")
    room_id = await make_room(server.hs, alice.user_id)
    assert await server.hs.store.rooms.transition(
        room_id, "active", "upgrading", actor=alice.user_id, reason="test", ts=1
    )
    status, body = await server.call(
        "PUT", f"/rooms/{room_id}/state/m.room.tombstone", alice, json={"body": "x"}
    )
    # The upgrade's own answer to a second upgrade: one message, one code (Synapse's M_UNKNOWN).
    assert (status, body["errcode"]) == (400, "M_UNKNOWN")
    assert body["error"] == "An upgrade for this room is currently in progress"
    assert await count_events(server, room_id, "m.room.tombstone") == 0
