"""matrix-nio against a real ``homeserver run``: three users in one room, alice upgrades it, and
bob sees the upgrade through sync — the tombstone in the old room, and the replacement room
already among his joined rooms with its create event naming the predecessor. A message bob
sends there reaches alice and carol.

nio's own ``room_upgrade`` emulates an upgrade client-side (createRoom + tombstone), so the
server's endpoint is called with aiohttp.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from nio import (
    JoinResponse,
    RoomCreateEvent,
    RoomCreateResponse,
    RoomMessageText,
    RoomPreset,
    RoomSendResponse,
    SyncResponse,
    UnknownEvent,
)

from tests.http_client import Client, q
from tests.real_clients.nio_helpers import NIO_CONFIG, register, sync_until
from tests.real_clients.server_process import running_homeserver

SERVER_NAME = "nio-upgrade.test"


def _events(response: SyncResponse, room_id: str) -> list[object]:
    room = response.rooms.join.get(room_id)
    if room is None:
        return []
    return [*room.state, *room.timeline.events]


def _tombstone(response: SyncResponse, room_id: str) -> dict[str, Any] | None:
    """The m.room.tombstone's content in ``room_id`` of this sync (nio has no class for it)."""
    for event in _events(response, room_id):
        source = getattr(event, "source", {})
        if source.get("type") == "m.room.tombstone":
            return dict(source["content"])
    return None


def _messages(response: SyncResponse, room_id: str) -> list[str]:
    return [e.body for e in _events(response, room_id) if isinstance(e, RoomMessageText)]


async def test_nio_users_follow_an_upgrade(tmp_path: Path) -> None:
    with running_homeserver(tmp_path, SERVER_NAME, NIO_CONFIG) as base_url:
        async with asyncio.timeout(180):
            await _scenario(base_url)


async def _scenario(base_url: str) -> None:
    alice = await register(base_url, SERVER_NAME, "alice")
    bob = await register(base_url, SERVER_NAME, "bob")
    carol = await register(base_url, SERVER_NAME, "carol")
    try:
        created = await alice.room_create(
            preset=RoomPreset.public_chat, name="Old room", topic="before", room_version="10"
        )
        assert isinstance(created, RoomCreateResponse), created
        old_room = created.room_id
        for client in (bob, carol):
            joined = await client.join(old_room)
            assert isinstance(joined, JoinResponse), joined
        sent = await alice.room_send(
            old_room, "m.room.message", {"msgtype": "m.text", "body": "before the upgrade"}
        )
        assert isinstance(sent, RoomSendResponse), sent
        for client in (alice, bob, carol):
            await sync_until(client, lambda r: "before the upgrade" in _messages(r, old_room))

        async with aiohttp.ClientSession() as session:
            body = await Client(session, base_url).ok(
                "POST", f"/rooms/{q(old_room)}/upgrade", alice.access_token, {"new_version": "11"}
            )
        new_room = body["replacement_room"]

        # bob: the tombstone in the old room, and already joined to the new one
        seen: dict[str, dict[str, Any]] = {}

        def upgraded(response: SyncResponse) -> bool:
            tombstone = _tombstone(response, old_room)
            if tombstone is not None:
                seen["tombstone"] = tombstone
            for event in _events(response, new_room):
                if isinstance(event, RoomCreateEvent) or (
                    isinstance(event, UnknownEvent) and event.type == "m.room.create"
                ):
                    seen["create"] = event.source["content"]
            return "tombstone" in seen and new_room in response.rooms.join

        await sync_until(bob, upgraded)
        assert seen["tombstone"]["replacement_room"] == new_room
        create = seen.get("create") or {}
        assert create.get("predecessor", {}).get("room_id") == old_room, create
        assert create.get("room_version") == "11", create
        assert new_room in bob.rooms and bob.rooms[new_room].name == "Old room"
        assert set(bob.rooms[new_room].users) == {alice.user_id, bob.user_id, carol.user_id}

        reply = await bob.room_send(
            new_room, "m.room.message", {"msgtype": "m.text", "body": "hello in the new room"}
        )
        assert isinstance(reply, RoomSendResponse), reply
        for client in (alice, carol):
            await sync_until(client, lambda r: "hello in the new room" in _messages(r, new_room))
            assert new_room in client.rooms
    finally:
        for client in (alice, bob, carol):
            await client.close()
