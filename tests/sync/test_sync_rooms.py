"""/sync room sections on both engines: initial and incremental syncs, limited timelines with a
prev_batch, invites with stripped state, left rooms, full_state, long-polling."""

from __future__ import annotations

import asyncio

import pytest

from homeserver.app import Homeserver
from homeserver.streams.tokens import StreamToken
from tests.builders import invite, join, leave, make_room, say
from tests.harness import TestServer
from tests.sync.helpers import state_types, sync, timeline_bodies


async def test_initial_sync_shows_joined_room_with_state_and_timeline(
    server: TestServer, hs: Homeserver
):
    alice = await server.register("alice")
    room_id = await make_room(hs, alice.user_id, name="Room")
    await say(hs, room_id, alice.user_id, "hello")
    body = await sync(server, alice)
    StreamToken.parse(body["next_batch"])
    room = body["rooms"]["join"][room_id]
    assert timeline_bodies(body, room_id) == ["hello"]
    timeline_ids = {e["event_id"] for e in room["timeline"]["events"]}
    # Every state key appears once, in the state section or in the timeline.
    seen = state_types(room) | {
        (e["type"], e["state_key"]) for e in room["timeline"]["events"] if "state_key" in e
    }
    assert {
        ("m.room.create", ""),
        ("m.room.member", alice.user_id),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.name", ""),
    } <= seen
    assert not timeline_ids & {e["event_id"] for e in room["state"]["events"]}
    assert all("room_id" not in e for e in room["timeline"]["events"])
    assert room["summary"]["m.joined_member_count"] == 1
    assert room["timeline"]["limited"] is False
    types = [e["type"] for e in body["account_data"]["events"]]
    assert "m.push_rules" in types
    assert body["to_device"] == {"events": []}
    # The syncing user is online now, and sees it.
    assert [e["sender"] for e in body["presence"]["events"]] == [alice.user_id]
    assert body["device_lists"] == {"changed": [], "left": []}


async def test_incremental_sync_returns_only_new_events(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, bob.user_id)
    first_alice = await sync(server, alice)
    first_bob = await sync(server, bob)
    await say(hs, room_id, alice.user_id, "new message")
    for user, first in ((alice, first_alice), (bob, first_bob)):
        body = await sync(server, user, since=first["next_batch"])
        assert timeline_bodies(body, room_id) == ["new message"]
        room = body["rooms"]["join"][room_id]
        assert room["timeline"]["limited"] is False
        assert room["state"]["events"] == []
        # Nothing new since: the room is left out.
        again = await sync(server, user, since=body["next_batch"])
        assert again["rooms"]["join"] == {}
        assert again["next_batch"] == body["next_batch"]


async def test_limited_timeline_has_prev_batch_and_state_delta(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await make_room(hs, alice.user_id)
    first = await sync(server, alice)
    await join(hs, room_id, bob.user_id)  # a state change that falls outside the timeline
    sent = [await say(hs, room_id, alice.user_id, f"m{i}") for i in range(15)]
    body = await sync(server, alice, since=first["next_batch"])
    room = body["rooms"]["join"][room_id]
    assert timeline_bodies(body, room_id) == [f"m{i}" for i in range(5, 15)]
    assert room["timeline"]["limited"] is True
    prev = StreamToken.parse(room["timeline"]["prev_batch"])
    # prev_batch is "after the event just before the timeline": paginating back from it
    # starts at m4.
    assert prev.events == sent[4].internal.stream_ordering
    assert state_types(room) == {("m.room.member", bob.user_id)}


async def test_invite_appears_with_stripped_state(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await make_room(hs, alice.user_id, name="Secret")
    before = await sync(server, bob)
    assert before["rooms"]["invite"] == {}
    invite_event = await invite(hs, room_id, alice.user_id, bob.user_id)
    for params in ({"since": before["next_batch"]}, {}):
        body = await sync(server, bob, **params)
        events = body["rooms"]["invite"][room_id]["invite_state"]["events"]
        types = {(e["type"], e["state_key"]) for e in events}
        assert {("m.room.create", ""), ("m.room.join_rules", ""), ("m.room.name", "")} <= types
        member = [e for e in events if e["type"] == "m.room.member"]
        # The inviter's own membership comes first (as Synapse): a client names a DM invite
        # after the inviter, and shows an "empty room" without it.
        assert [(m["state_key"], m["content"]["membership"]) for m in member] == [
            (alice.user_id, "join"),
            (bob.user_id, "invite"),
        ]
        assert member[0]["sender"] == alice.user_id and "event_id" not in member[0]
        assert member[-1]["state_key"] == bob.user_id
        assert member[-1]["content"]["membership"] == "invite"
        assert member[-1]["event_id"] == invite_event.event_id
        assert room_id not in body["rooms"]["join"]
    # Already seen: not repeated.
    later = await sync(server, bob, since=body["next_batch"])
    assert later["rooms"]["invite"] == {}


async def test_left_room_section(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, bob.user_id)
    first = await sync(server, bob)
    await say(hs, room_id, alice.user_id, "before you go")
    leave_event = await leave(hs, room_id, bob.user_id)
    await say(hs, room_id, alice.user_id, "after you left")
    body = await sync(server, bob, since=first["next_batch"])
    assert room_id not in body["rooms"]["join"]
    left = body["rooms"]["leave"][room_id]
    ids = [e["event_id"] for e in left["timeline"]["events"]]
    assert ids[-1] == leave_event.event_id
    bodies = [e["content"].get("body") for e in left["timeline"]["events"]]
    assert "before you go" in bodies and "after you left" not in bodies
    # Initial syncs leave left rooms out unless the filter asks for them.
    assert room_id not in (await sync(server, bob))["rooms"]["leave"]
    with_leave = await sync(server, bob, filter='{"room": {"include_leave": true}}')
    assert with_leave["rooms"]["leave"][room_id]["timeline"]["events"][-1]["event_id"] == (
        leave_event.event_id
    )


async def test_rejected_invite_shows_only_the_leave(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await make_room(hs, alice.user_id)
    await say(hs, room_id, alice.user_id, "private history")
    await invite(hs, room_id, alice.user_id, bob.user_id)
    first = await sync(server, bob)
    rejection = await leave(hs, room_id, bob.user_id)
    body = await sync(server, bob, since=first["next_batch"])
    left = body["rooms"]["leave"][room_id]
    assert [e["event_id"] for e in left["timeline"]["events"]] == [rejection.event_id]
    assert left["state"]["events"] == []


async def test_full_state_and_newly_joined_room(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await make_room(hs, alice.user_id)
    await say(hs, room_id, alice.user_id, "old")
    first = await sync(server, bob)
    assert first["rooms"]["join"] == {}
    await join(hs, room_id, bob.user_id)
    body = await sync(server, bob, since=first["next_batch"])
    room = body["rooms"]["join"][room_id]
    # Newly joined: the full state (create event included) and history before the join.
    in_timeline = {(e["type"], e.get("state_key")) for e in room["timeline"]["events"]}
    assert ("m.room.create", "") in state_types(room) | in_timeline
    assert "old" in timeline_bodies(body, room_id)
    full = await sync(server, bob, since=body["next_batch"], full_state="true")
    assert ("m.room.create", "") in state_types(full["rooms"]["join"][room_id])
    assert full["rooms"]["join"][room_id]["timeline"]["events"] == []


async def test_long_poll_wakes_on_send(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    room_id = await make_room(hs, alice.user_id)
    first = await sync(server, alice)
    poll = asyncio.create_task(sync(server, alice, since=first["next_batch"], timeout="10000"))
    await asyncio.wait_for(hs.notifier.parked(), 10)
    await say(hs, room_id, alice.user_id, "wake up")
    body = await asyncio.wait_for(poll, 30)
    assert timeline_bodies(body, room_id) == ["wake up"]


async def test_empty_long_poll_times_out_with_same_position(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    await make_room(hs, alice.user_id)
    first = await sync(server, alice)
    body = await sync(server, alice, since=first["next_batch"], timeout="50")
    assert body["rooms"]["join"] == {}
    assert body["next_batch"] == first["next_batch"]


async def test_bad_parameters_are_400(server: TestServer):
    alice = await server.register("alice")
    for params in (
        {"since": "garbage"},
        {"since": "s1_x"},
        {"since": "s-1"},
        {"since": "s99999999999999999999999"},
        {"since": "s1_2_3_4_5_6_7_8"},
        {"set_presence": "busy"},
        {"timeout": "soon"},
        {"full_state": "maybe"},
    ):
        body = await sync(server, alice, expect=400, **params)
        assert body["errcode"] == "M_INVALID_PARAM"
    status, body = await server.call("GET", "/sync")
    assert status == 401


async def test_prev_batch_paginates_messages_backwards(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    room_id = await make_room(hs, alice.user_id)
    for i in range(15):
        await say(hs, room_id, alice.user_id, f"m{i}")
    body = await sync(server, alice)
    prev_batch = body["rooms"]["join"][room_id]["timeline"]["prev_batch"]
    status, page = await server.call(
        "GET",
        f"/rooms/{room_id}/messages",
        alice,
        params={"dir": "b", "from": prev_batch, "limit": "3"},
    )
    if status == 404 and page.get("errcode") == "M_UNRECOGNIZED":
        pytest.skip("/messages is not served yet")
    assert status == 200, page
    assert [e["content"]["body"] for e in page["chunk"]] == ["m4", "m3", "m2"]
