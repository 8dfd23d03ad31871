"""Typing notifications on both engines: shown in /sync's ephemeral section to the room's
members, waking a long poll, stopped by the user or by the timeout, filtered by
``room.ephemeral``; refused for someone else, outside a joined room and with bad bodies, and
limited by rc_typing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from homeserver.app import Homeserver
from tests.builders import join, make_room
from tests.harness import TestServer, TestUser
from tests.sync.helpers import sync


def typing_in(body: dict[str, Any], room_id: str) -> list[str] | None:
    """The room's m.typing user_ids in a sync answer (None: no m.typing event)."""
    room = body["rooms"]["join"].get(room_id, {})
    for event in room.get("ephemeral", {}).get("events", []):
        if event["type"] == "m.typing":
            return list(event["content"]["user_ids"])
    return None


async def put_typing(
    server: TestServer, user: TestUser, room_id: str, body: Any, target: str | None = None
) -> tuple[int, Any]:
    return await server.call(
        "PUT", f"/rooms/{room_id}/typing/{target or user.user_id}", user, json=body
    )


async def test_typing_reaches_members_and_wakes_a_long_poll(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, bob.user_id)
    first = await sync(server, bob)
    assert typing_in(first, room_id) == []  # an initial sync says nobody types

    poll = asyncio.create_task(sync(server, bob, since=first["next_batch"], timeout="20000"))
    await hs.notifier.parked()
    assert await put_typing(server, alice, room_id, {"typing": True, "timeout": 30000}) == (
        200,
        {},
    )
    woken = await poll
    assert typing_in(woken, room_id) == [alice.user_id]

    # Typing again changes nothing a client sees: the room is not sent again.
    await put_typing(server, alice, room_id, {"typing": True, "timeout": 30000})
    quiet = await sync(server, bob, since=woken["next_batch"])
    assert room_id not in quiet["rooms"]["join"]

    # A filter without m.typing leaves it out; a token from before still gets it.
    no_typing = json.dumps({"room": {"ephemeral": {"not_types": ["m.typing"]}}})
    filtered = await sync(server, bob, since=first["next_batch"], filter=no_typing)
    assert typing_in(filtered, room_id) is None

    answer = await put_typing(server, alice, room_id, {"typing": False})
    assert answer == (200, {}), answer
    stopped = await sync(server, bob, since=woken["next_batch"])
    assert typing_in(stopped, room_id) == []
    # Stopping when not typing is no change.
    await put_typing(server, alice, room_id, {"typing": False})
    assert room_id not in (await sync(server, bob, since=stopped["next_batch"]))["rooms"]["join"]


async def test_typing_times_out(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    room_id = await make_room(hs, alice.user_id)
    first = await sync(server, alice)
    before = hs.typing.position
    await put_typing(server, alice, room_id, {"typing": True, "timeout": 1})
    # The timer removes the entry and wakes the poll: no clock is read by the test.
    later = await sync(server, alice, since=first["next_batch"], timeout="20000")
    while typing_in(later, room_id) != []:
        later = await sync(server, alice, since=later["next_batch"], timeout="20000")
    assert hs.typing.typers(room_id) == []
    assert hs.typing.position == before + 2  # started, then timed out


async def test_typing_refusals(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    mallory = await server.register("mallory")
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, bob.user_id)
    ok = {"typing": True, "timeout": 1000}

    # For someone else, even a member of the room.
    status, body = await put_typing(server, mallory, room_id, ok, target=alice.user_id)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await put_typing(server, bob, room_id, ok, target=alice.user_id)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # Not joined (never, or only invited).
    status, body = await put_typing(server, mallory, room_id, ok)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await put_typing(server, alice, "!nowhere:test.example", ok)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await put_typing(server, alice, "not-a-room", ok)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    for bad in (
        {},
        {"typing": "yes"},
        {"typing": 1},
        {"typing": True, "timeout": -1},
        {"typing": True, "timeout": "30000"},
        {"typing": True, "timeout": 1.5},
        {"typing": True, "timeout": True},
    ):
        status, body = await put_typing(server, alice, room_id, bad)
        assert (status, body["errcode"]) == (400, "M_BAD_JSON"), bad
    status, body = await put_typing(server, alice, room_id, [True])
    assert status == 400
    status, _ = await server.call("PUT", f"/rooms/{room_id}/typing/{alice.user_id}", json=ok)
    assert status == 401
    assert hs.typing.typers(room_id) == []
    assert await hs.store.outbox.destinations_with_entries() == []
