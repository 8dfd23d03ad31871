"""createRoom killed (SIGKILL) at each named step, then restarted: the room exists completely or
leaves no trace, nothing written before is lost, and creating the room again works.

Per case: start, register alice and bob, make a room with a few messages (the events that must
survive), stop; start again with the fault point armed, createRoom (public, alias, name, topic,
invite) — the process dies; start without the fault and check over HTTP and in the database.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.crash.harness import (
    ENGINES,
    SERVER_NAME,
    SIGKILLED,
    CrashServer,
    crash_server,
    crashing_request,
)
from tests.http_client import Client, q

BEFORE_COMMIT = ["create.validated", "create.built", "create.committing"]
AFTER_COMMIT = ["create.committed"]
ALIAS_LOCALPART = "crashed"
ALIAS = f"#{ALIAS_LOCALPART}:{SERVER_NAME}"


def _create_body(alias_localpart: str, bob: str) -> dict[str, Any]:
    return {
        "preset": "public_chat",
        "visibility": "public",
        "room_alias_name": alias_localpart,
        "name": "Crash room",
        "topic": "made while dying",
        "invite": [bob],
        "initial_state": [{"type": "org.example.crash", "state_key": "", "content": {"a": 1}}],
    }


async def _state_keys(server: CrashServer, room_id: str) -> Counter[tuple[str, str]]:
    rows = await server.probe.rows(
        "SELECT type, state_key FROM events WHERE room_id = ? AND state_key IS NOT NULL", room_id
    )
    return Counter((t, k) for t, k in rows)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("point", BEFORE_COMMIT + AFTER_COMMIT)
async def test_create_room_killed_at_each_step(tmp_path: Path, engine: str, point: str) -> None:
    async with crash_server(tmp_path, engine) as server:
        await _scenario(server, point)


async def _scenario(server: CrashServer, point: str) -> None:
    # --- before: two users, a room with messages
    base_url = server.start()
    async with aiohttp.ClientSession() as session:
        client = Client(session, base_url)
        _alice, alice_token = await client.register("alice")
        bob, bob_token = await client.register("bob")
        existing = (await client.ok("POST", "/createRoom", alice_token, {"name": "kept"}))[
            "room_id"
        ]
        sent = []
        for i in range(3):
            reply = await client.ok(
                "PUT",
                f"/rooms/{q(existing)}/send/m.room.message/t{i}",
                alice_token,
                {"msgtype": "m.text", "body": f"before {i}"},
            )
            sent.append(reply["event_id"])
    server.stop()
    rooms_before = await server.probe.room_ids("rooms")
    events_before = await server.probe.value("SELECT COUNT(*) FROM events")

    # --- the crash
    base_url = server.start(fault=point)
    async with aiohttp.ClientSession() as session:
        await crashing_request(
            Client(session, base_url),
            "POST",
            "/createRoom",
            alice_token,
            _create_body(ALIAS_LOCALPART, bob),
        )
    assert await server.wait_killed() == SIGKILLED, server.log()[-3000:]

    # --- after the restart
    base_url = server.start()
    assert await server.probe.orphans() == {}
    assert await server.probe.upgrading_rooms() == []
    new_rooms = await server.probe.room_ids("rooms") - rooms_before
    alias_rows = await server.probe.rows(
        "SELECT room_id FROM room_aliases WHERE room_alias = ?", ALIAS
    )
    async with aiohttp.ClientSession() as session:
        client = Client(session, base_url)
        # nothing written before the crash is lost
        for event_id in sent:
            await client.ok("GET", f"/rooms/{q(existing)}/event/{q(event_id)}", alice_token)
        status, resolved = await client.call("GET", f"/directory/room/{q(ALIAS)}")

        if point in BEFORE_COMMIT:
            assert new_rooms == set()
            assert await server.probe.value("SELECT COUNT(*) FROM events") == events_before
            assert alias_rows == []
            assert status == 404, resolved
            retry = await client.ok(
                "POST", "/createRoom", alice_token, _create_body(ALIAS_LOCALPART, bob)
            )
            new_room = retry["room_id"]  # made again: checked like the one that survived
        else:
            assert len(new_rooms) == 1, new_rooms
            (new_room,) = new_rooms
            assert alias_rows == [(new_room,)]
            assert status == 200 and resolved["room_id"] == new_room, resolved
            # the alias is taken for good; the same request under another alias works
            status, body = await client.call(
                "POST", "/createRoom", alice_token, _create_body(ALIAS_LOCALPART, bob)
            )
            assert status == 400 and body["errcode"] == "M_ROOM_IN_USE", body
            reference = (
                await client.ok("POST", "/createRoom", alice_token, _create_body("again", bob))
            )["room_id"]
            # complete: the same state events as a room made without a crash
            assert await _state_keys(server, new_room) == await _state_keys(server, reference)

        await _assert_complete(client, server, new_room, alice_token, bob_token, bob)
    server.stop()
    assert "Traceback" not in server.log(), server.log()[-4000:]


async def _assert_complete(
    client: Client,
    server: CrashServer,
    room_id: str,
    alice_token: str,
    bob_token: str,
    bob: str,
) -> None:
    state = await client.ok("GET", f"/rooms/{q(room_id)}/state", alice_token)
    by_key = {(e["type"], e["state_key"]): e["content"] for e in state}
    assert by_key[("m.room.name", "")] == {"name": "Crash room"}
    assert by_key[("m.room.topic", "")]["topic"] == "made while dying"
    assert by_key[("m.room.canonical_alias", "")]["alias"] == ALIAS
    assert by_key[("m.room.join_rules", "")]["join_rule"] == "public"
    assert by_key[("org.example.crash", "")] == {"a": 1}
    assert by_key[("m.room.member", bob)]["membership"] == "invite"
    assert ("m.room.create", "") in by_key and ("m.room.power_levels", "") in by_key
    current = await server.probe.value(
        "SELECT COUNT(*) FROM current_state_events WHERE room_id = ?", room_id
    )
    assert current == len(state)
    assert (await server.probe.room_status(room_id)) == ("active", None)
    public = await client.ok("GET", "/publicRooms", alice_token)
    assert room_id in {r["room_id"] for r in public["chunk"]}
    # the stream works after the restart: bob sees the invite, joins, and the room is usable
    sync = await client.ok("GET", "/sync?timeout=0", bob_token)
    assert room_id in sync["rooms"]["invite"], sync["rooms"]
    await client.ok("POST", f"/join/{q(room_id)}", bob_token, {})
    await client.ok(
        "PUT",
        f"/rooms/{q(room_id)}/send/m.room.message/after",
        bob_token,
        {"msgtype": "m.text", "body": "after the crash"},
    )
