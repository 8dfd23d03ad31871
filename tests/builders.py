"""Rooms for tests, the one builder every test folder uses.

Two ways to get a room, for two kinds of test:

* ``make_room(hs, creator, ...)`` commits a genesis straight through the store (``BatchBuilder``
  and ``persist_events``), so a test of sending, reading, syncing or federating does not depend
  on the createRoom endpoint; ``build_room`` is the same over a bare store and signer.
  ``join``/``leave``/``invite``/``say`` then send one event through ``hs.sender``.
* ``create_room(server, user, **body)`` goes through ``POST /createRoom`` like a client, for
  tests where the room's creation path is part of what they check (upgrades, admin, federation).

Users come from the harness (``server.register``, ``server.login_device``, ``make_user``);
``generous_config`` lifts every rate limit a test could meet by accident.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from homeserver.app import Homeserver
from homeserver.config import HomeserverConfig
from homeserver.events.builder import Signer
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.room_versions import get_room_version
from homeserver.rooms.sender import BatchBuilder
from homeserver.storage import NewRoom, Store
from tests.harness import TestServer, TestUser, make_config

#: a rate limit no test meets unless it is about rate limiting.
HIGH_LIMIT: dict[str, Any] = {"per_second": 1000, "burst_count": 1000}

#: every ``rc_*`` limit a room, membership, message or device test could trip by accident.
GENEROUS_LIMITS: dict[str, Any] = {
    "rc_message": HIGH_LIMIT,
    "rc_joins": {"local": HIGH_LIMIT, "remote": HIGH_LIMIT},
    "rc_room_creation": HIGH_LIMIT,
    "rc_invites": HIGH_LIMIT,
    "rc_to_device": HIGH_LIMIT,
    "rc_login": HIGH_LIMIT,
}


def generous_config(tmp_path: Path, **overrides: Any) -> HomeserverConfig:
    return make_config(tmp_path, **{**GENEROUS_LIMITS, **overrides})


async def build_room(
    store: Store,
    signer: Signer,
    creator: str,
    *,
    version: str = "10",
    room_id: str | None = None,
    now: int,
    join_rule: str = "public",
    history_visibility: str | None = "shared",
    name: str | None = None,
    users: dict[str, int] | None = None,
    power_levels: dict[str, Any] | None = None,
    allow: list[dict[str, Any]] | None = None,
    clock: Callable[[], int] | None = None,
    predecessor: str | None = None,
) -> str:
    """A room made by ``creator`` (joined, PL 100 or a v12 creator), committed in one go;
    returns its ID. ``room_id`` is ignored where the version derives it from the create event;
    ``history_visibility=None`` leaves that event out; ``allow`` is the join rules' allow list;
    ``predecessor`` the room the create event says this one replaces."""
    room_version = get_room_version(version)
    if room_version.room_id_is_create_event_hash:
        room_id = None
    elif room_id is None:
        room_id = f"!{secrets.token_hex(8)}:{signer.server_name}"
    batch = (
        BatchBuilder(room_version, signer, room_id)
        if clock is None
        else BatchBuilder(room_version, signer, room_id, clock=clock)
    )
    create: dict[str, Any] = {"room_version": version}
    if not room_version.implicit_room_creator:
        create["creator"] = creator
    if predecessor is not None:
        create["predecessor"] = {"room_id": predecessor, "event_id": "$unknown"}
    batch.add(EventDraft("m.room.create", creator, create, ""))
    batch.add(EventDraft("m.room.member", creator, {"membership": "join"}, creator))
    pl_users = {} if room_version.creators_have_infinite_power else {creator: 100}
    pl_users.update(users or {})
    pl: dict[str, Any] = {"users": pl_users, "users_default": 0, "state_default": 50}
    pl.update(power_levels or {})
    batch.add(EventDraft("m.room.power_levels", creator, pl, ""))
    join_rules: dict[str, Any] = {"join_rule": join_rule}
    if allow is not None:
        join_rules["allow"] = allow
    batch.add(EventDraft("m.room.join_rules", creator, join_rules, ""))
    if history_visibility is not None:
        visibility = {"history_visibility": history_visibility}
        batch.add(EventDraft("m.room.history_visibility", creator, visibility, ""))
    if name is not None:
        batch.add(EventDraft("m.room.name", creator, {"name": name}, ""))
    assert batch.room_id is not None
    await store.persist_events(
        [(e, None) for e in batch.events],
        new_room=NewRoom(batch.room_id, version, creator, now),
    )
    return batch.room_id


async def make_room(hs: Homeserver, creator: str, **options: Any) -> str:
    """``build_room`` on ``hs`` (its store, signer and clock), then wake /sync."""
    room_id = await build_room(
        hs.store, hs.signer, creator, now=hs.clock(), clock=hs.clock, **options
    )
    hs.notifier.notify([room_id])
    return room_id


async def join(hs: Homeserver, room_id: str, user_id: str) -> Event:
    """Join ``user_id`` to a public room straight through the sender."""
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


async def create_room(server: TestServer, user: TestUser, **body: Any) -> str:
    """A room made through ``POST /createRoom``; returns its ID."""
    status, answer = await server.call("POST", "/createRoom", user, json=body)
    assert status == 200, answer
    room_id: str = answer["room_id"]
    return room_id


async def create_public_room(server: TestServer, user: TestUser, **body: Any) -> str:
    """``create_room`` with the ``public_chat`` preset unless the body names another."""
    return await create_room(server, user, **{"preset": "public_chat", **body})
