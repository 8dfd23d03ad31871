"""Rooms for /sync tests, built straight through the sender (no dependency on the room
endpoints): a genesis batch committed with ``persist_events``, later events via ``hs.sender``."""

from __future__ import annotations

import secrets
from typing import Any

from homeserver.app import Homeserver
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.room_versions import get_room_version
from homeserver.rooms.sender import BatchBuilder
from homeserver.storage import NewRoom
from tests.harness import TestServer, TestUser


async def make_room(
    hs: Homeserver, creator: str, *, version: str = "10", name: str | None = None
) -> str:
    """A public room with ``creator`` joined (creator power 100)."""
    room_version = get_room_version(version)
    room_id = (
        None
        if room_version.room_id_is_create_event_hash
        else f"!{secrets.token_hex(8)}:test.example"
    )
    batch = BatchBuilder(room_version, hs.signer, room_id, clock=hs.clock)
    batch.add(
        EventDraft("m.room.create", creator, {"room_version": version, "creator": creator}, "")
    )
    batch.add(EventDraft("m.room.member", creator, {"membership": "join"}, creator))
    users = {} if room_version.creators_have_infinite_power else {creator: 100}
    batch.add(EventDraft("m.room.power_levels", creator, {"users": users}, ""))
    batch.add(EventDraft("m.room.join_rules", creator, {"join_rule": "public"}, ""))
    if name is not None:
        batch.add(EventDraft("m.room.name", creator, {"name": name}, ""))
    assert batch.room_id is not None
    await hs.store.persist_events(
        [(e, None) for e in batch.events],
        new_room=NewRoom(batch.room_id, version, creator, hs.clock()),
    )
    hs.notifier.notify([batch.room_id])
    return batch.room_id


async def join(hs: Homeserver, room_id: str, user_id: str) -> Event:
    return await hs.sender.send(
        room_id, EventDraft("m.room.member", user_id, {"membership": "join"}, user_id)
    )


async def leave(hs: Homeserver, room_id: str, user_id: str) -> Event:
    return await hs.sender.send(
        room_id, EventDraft("m.room.member", user_id, {"membership": "leave"}, user_id)
    )


async def invite(hs: Homeserver, room_id: str, sender: str, target: str) -> Event:
    return await hs.sender.send(
        room_id, EventDraft("m.room.member", sender, {"membership": "invite"}, target)
    )


async def say(hs: Homeserver, room_id: str, sender: str, body: str) -> Event:
    return await hs.sender.send(
        room_id, EventDraft("m.room.message", sender, {"msgtype": "m.text", "body": body})
    )


async def sync(
    server: TestServer, user: TestUser, *, expect: int = 200, **params: str
) -> dict[str, Any]:
    status, body = await server.call("GET", "/sync", user, params=params)
    assert status == expect, body
    return body


def timeline_bodies(response: dict[str, Any], room_id: str) -> list[str]:
    events = response["rooms"]["join"][room_id]["timeline"]["events"]
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


def state_types(section: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["type"], e["state_key"]) for e in section["state"]["events"]}
