"""Lazy-loading room members on both engines: /sync's state section with
``room.state.lazy_load_members`` (initial, incremental, gappy, per device, with and without
``include_redundant_members``, heroes of an unnamed room) and /messages' ``state``."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from homeserver.app import Homeserver
from tests.builders import join, leave, make_room, say
from tests.harness import TestServer, TestUser
from tests.sync.helpers import sync

MEMBER = "m.room.member"


def lazy_filter(limit: int, *, redundant: bool = False) -> str:
    state: dict[str, Any] = {"lazy_load_members": True}
    if redundant:
        state["include_redundant_members"] = True
    return json.dumps({"room": {"state": state, "timeline": {"limit": limit}}})


def state_members(body: dict[str, Any], room_id: str, section: str = "join") -> dict[str, str]:
    """Member user ID → membership, of the room's state section."""
    events = body["rooms"][section][room_id]["state"]["events"]
    return {e["state_key"]: e["content"]["membership"] for e in events if e["type"] == MEMBER}


def timeline_of(body: dict[str, Any], room_id: str) -> list[dict[str, Any]]:
    return body["rooms"]["join"][room_id]["timeline"]["events"]


async def test_initial_and_incremental_lazy_sync_sends_only_needed_members(
    server: TestServer, hs: Homeserver
):
    alice = await server.register("alice")
    users = {name: await server.register(name) for name in ("bob", "carol", "dave")}
    room_id = await make_room(hs, alice.user_id, name="Room")
    for user in users.values():
        await join(hs, room_id, user.user_id)
    bob, carol, dave = users["bob"].user_id, users["carol"].user_id, users["dave"].user_id
    await say(hs, room_id, carol, "c1")
    await say(hs, room_id, bob, "b1")

    # Element's default filter, stored and used by ID, parses and applies.
    element = {
        "room": {
            "timeline": {"limit": 2, "unread_thread_notifications": True},
            "state": {"lazy_load_members": True},
        }
    }
    status, created = await server.call(
        "POST", f"/user/{quote(alice.user_id)}/filter", alice, json=element
    )
    assert status == 200, created
    first = await sync(server, alice, filter=created["filter_id"])
    room = first["rooms"]["join"][room_id]
    # The senders and the syncing user, never dave (who neither sent nor is a hero).
    assert state_members(first, room_id) == {alice.user_id: "join", carol: "join", bob: "join"}
    types = {e["type"] for e in room["state"]["events"]}
    assert {"m.room.create", "m.room.power_levels", "m.room.name"} <= types
    assert room["summary"]["m.joined_member_count"] == 4
    assert room["summary"]["m.invited_member_count"] == 0

    # Without lazy loading every member is there.
    full = await sync(server, alice, filter=json.dumps({"room": {"timeline": {"limit": 2}}}))
    assert set(state_members(full, room_id)) == {alice.user_id, bob, carol, dave}

    # Incremental, same device: carol's member event was sent, dave's was not.
    await say(hs, room_id, carol, "c2")
    await say(hs, room_id, dave, "d1")
    second = await sync(server, alice, filter=lazy_filter(10), since=first["next_batch"])
    assert [e["content"]["body"] for e in timeline_of(second, room_id)] == ["c2", "d1"]
    assert state_members(second, room_id) == {dave: "join"}
    # ... and now dave's is remembered too.
    await say(hs, room_id, dave, "d2")
    third = await sync(server, alice, filter=lazy_filter(10), since=second["next_batch"])
    assert state_members(third, room_id) == {}

    # include_redundant_members: sent again, whatever this device has.
    redundant = await sync(
        server, alice, filter=lazy_filter(10, redundant=True), since=second["next_batch"]
    )
    assert state_members(redundant, room_id) == {dave: "join"}

    # Another device of alice has its own memory: it is sent carol's.
    phone = await server.login_device(alice, "PHONE")
    await sync(server, phone, filter=lazy_filter(1))  # its initial sync: only dave's d2
    await say(hs, room_id, carol, "c3")
    on_phone = await sync(server, phone, filter=lazy_filter(10), since=third["next_batch"])
    assert carol in state_members(on_phone, room_id)

    # A new sync sequence (no since) forgets what the device was sent.
    again = await sync(server, alice, filter=lazy_filter(1))
    assert state_members(again, room_id) == {alice.user_id: "join", carol: "join"}


async def test_member_who_joined_and_left(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    eve = await server.register("eve")
    frank = await server.register("frank")
    room_id = await make_room(hs, alice.user_id, name="Room")
    await join(hs, room_id, eve.user_id)
    await say(hs, room_id, eve.user_id, "e1")
    await leave(hs, room_id, eve.user_id)
    await say(hs, room_id, alice.user_id, "a1")
    body = await sync(server, alice, filter=lazy_filter(3))
    timeline = timeline_of(body, room_id)
    assert [e.get("content", {}).get("body") for e in timeline] == ["e1", None, "a1"]
    # Her join (the membership her message was sent under) is state; her leave is timeline.
    assert state_members(body, room_id) == {alice.user_id: "join", eve.user_id: "join"}
    assert timeline[1]["content"]["membership"] == "leave"
    assert timeline[1]["unsigned"]["prev_content"]["membership"] == "join"

    # A gappy incremental sync keeps every member change of the gap, even of non-senders.
    await join(hs, room_id, frank.user_id)
    await leave(hs, room_id, frank.user_id)
    for i in range(3):
        await say(hs, room_id, alice.user_id, f"late {i}")
    gappy = await sync(server, alice, filter=lazy_filter(2), since=body["next_batch"])
    assert gappy["rooms"]["join"][room_id]["timeline"]["limited"] is True
    assert state_members(gappy, room_id) == {frank.user_id: "leave"}


async def test_heroes_of_an_unnamed_room_are_loaded(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, bob.user_id)
    await say(hs, room_id, alice.user_id, "hi")
    body = await sync(server, alice, filter=lazy_filter(1))
    room = body["rooms"]["join"][room_id]
    assert room["summary"]["m.heroes"] == [bob.user_id]
    # bob sent nothing shown, but the client names the room after him.
    assert state_members(body, room_id) == {alice.user_id: "join", bob.user_id: "join"}
    await say(hs, room_id, alice.user_id, "again")
    later = await sync(server, alice, filter=lazy_filter(1), since=body["next_batch"])
    assert state_members(later, room_id) == {}


async def _set_name(server: TestServer, user: TestUser, room_id: str, name: str) -> None:
    status, body = await server.call(
        "PUT",
        f"/rooms/{room_id}/state/m.room.member/{quote(user.user_id)}",
        user,
        json={"membership": "join", "displayname": name},
    )
    assert status == 200, body


async def test_messages_lazy_state_is_the_senders_members_at_the_chunk(
    server: TestServer, hs: Homeserver
):
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    room_id = await make_room(hs, alice.user_id, name="Room")
    await join(hs, room_id, bob.user_id)
    await join(hs, room_id, carol.user_id)
    await _set_name(server, bob, room_id, "Bob one")
    await say(hs, room_id, bob.user_id, "x")
    await _set_name(server, bob, room_id, "Bob two")
    only_messages = json.dumps({"types": ["m.room.message"], "lazy_load_members": True})
    status, body = await server.call(
        "GET",
        f"/rooms/{room_id}/messages",
        alice,
        params={"dir": "b", "limit": "1", "filter": only_messages},
    )
    assert status == 200, body
    assert [e["content"]["body"] for e in body["chunk"]] == ["x"]
    # bob as he was when he said it; nobody else (carol sent nothing here).
    assert [(e["state_key"], e["content"].get("displayname")) for e in body["state"]] == [
        (bob.user_id, "Bob one")
    ]
    # /context with lazy loading: the state at its last event, members of its senders only.
    x_id = body["chunk"][0]["event_id"]
    status, context = await server.call(
        "GET",
        f"/rooms/{room_id}/context/{quote(x_id)}",
        alice,
        params={"limit": "0", "filter": only_messages},
    )
    assert status == 200, context
    members = [e["state_key"] for e in context["state"] if e["type"] == MEMBER]
    assert members == [bob.user_id]
    assert any(e["type"] == "m.room.name" for e in context["state"])
    # Without lazy loading no state list is filled.
    status, plain = await server.call(
        "GET", f"/rooms/{room_id}/messages", alice, params={"dir": "b", "limit": "1"}
    )
    assert status == 200 and plain["state"] == []


async def test_bad_lazy_loading_options_are_refused(server: TestServer):
    alice = await server.register("alice")
    for state in (
        {"lazy_load_members": "true"},
        {"lazy_load_members": True, "include_redundant_members": 1},
        {"lazy_load_members": None},
    ):
        definition = {"room": {"state": state}}
        status, body = await server.call(
            "GET", "/sync", alice, params={"filter": json.dumps(definition)}
        )
        assert (status, body["errcode"]) == (400, "M_BAD_JSON"), state
        status, body = await server.call(
            "POST", f"/user/{quote(alice.user_id)}/filter", alice, json=definition
        )
        assert (status, body["errcode"]) == (400, "M_BAD_JSON"), state
    for bad in ('{"lazy_load_members": "yes"}', '{"lazy_load_members": 1}'):
        status, body = await server.call(
            "GET", "/rooms/!r:test.example/messages", alice, params={"filter": bad}
        )
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), bad
