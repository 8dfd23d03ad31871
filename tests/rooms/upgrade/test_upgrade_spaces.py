"""Spaces and knocks follow our upgrades (issue 14): the links to an upgraded room in the spaces
and children on this server move to its replacement (sent as a local user with the power, never
forged), and local knocks are made again in the new room — on both engines."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from homeserver.app import Homeserver
from homeserver.config import HomeserverConfig
from homeserver.events.draft import EventDraft
from tests.builders import create_room, generous_config
from tests.harness import TestServer, TestUser
from tests.rooms.upgrade.helpers import join, state_of, upgrade

SERVER = "test.example"


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def _link(hs: Homeserver, sender: TestUser, room: str, kind: str, target: str, **c: Any):
    content = {"via": [SERVER], **c}
    await hs.sender.send(room, EventDraft(f"m.space.{kind}", sender.user_id, content, target))


async def _links(hs: Homeserver, room: str, kind: str) -> dict[str, dict[str, Any]]:
    """The room's live links of ``kind`` (removed ones, with empty content, left out)."""
    state = await state_of(hs, room)
    return {sk: c for (t, sk), c in state.items() if t == f"m.space.{kind}" and c}


async def _live(hs: Homeserver, room: str) -> bool:
    record = await hs.store.rooms.get_room(room)
    return record is not None and record.status == "active"


async def _upgraded(server: TestServer, user: TestUser, room: str, version: str) -> str:
    status, body = await upgrade(server, user, room, version)
    assert status == 200, body
    return str(body["replacement_room"])


async def _assert_links_live(hs: Homeserver, rooms: list[str]) -> None:
    """Every link in these live rooms names a live room, and each child/parent pair is
    mutual."""
    for room in rooms:
        assert await _live(hs, room), room
        for kind, back in (("child", "parent"), ("parent", "child")):
            for target in await _links(hs, room, kind):
                assert await _live(hs, target), (room, kind, target)
                assert room in await _links(hs, target, back), (room, kind, target)


async def _space_with_children(
    server: TestServer, user: TestUser, count: int
) -> tuple[str, list[str]]:
    """A space of ``user``'s and ``count`` children, linked both ways (children ordered a, b,
    …; the first suggested)."""
    hs = server.hs
    space = await create_room(
        server, user, preset="public_chat", room_version="10", creation_content={"type": "m.space"}
    )
    children = []
    for order in "abc"[:count]:
        child = await create_room(server, user, preset="public_chat", room_version="10")
        await _link(hs, user, space, "child", child, order=order, suggested=order == "a")
        await _link(hs, user, child, "parent", space, canonical=True)
        children.append(child)
    return space, children


async def test_space_and_child_upgrades_keep_every_link_live(server: TestServer) -> None:
    hs = server.hs
    alice = await server.register("alice")
    space, children = await _space_with_children(server, alice, 3)

    new_space = await _upgraded(server, alice, space, "11")
    new_child = await _upgraded(server, alice, children[0], "11")

    live_children = [new_child, *children[1:]]
    assert await _links(hs, new_space, "child") == {
        child: {"via": [SERVER], "order": order, "suggested": order == "a"}
        for child, order in zip(live_children, "abc", strict=True)
    }
    for child in live_children:
        assert await _links(hs, child, "parent") == {
            new_space: {"via": [SERVER], "canonical": True}
        }
    await _assert_links_live(hs, [new_space, *live_children])
    # The moved links are the upgrader's, and the old ones were cleared (empty content).
    state_ids = await hs.store.state.get_current_state_ids(new_space)
    cleared = await hs.store.events.get_event(state_ids[("m.space.child", children[0])])
    assert cleared is not None and cleared.content == {} and cleared.sender == alice.user_id
    # And as a client sees it: the new space's /hierarchy lists exactly the live rooms.
    status, body = await server.call(
        "GET", f"/_matrix/client/v1/rooms/{new_space}/hierarchy", alice
    )
    assert status == 200, body
    assert {room["room_id"] for room in body["rooms"]} == {new_space, *live_children}


async def test_links_are_moved_by_a_local_user_with_the_power_or_left(server: TestServer) -> None:
    hs = server.hs
    alice, bob = await server.register("alice"), await server.register("bob")
    # alice's space; bob is a plain member there, the admin of the room he upgrades.
    space = await create_room(
        server, alice, preset="public_chat", room_version="10", creation_content={"type": "m.space"}
    )
    locked = await create_room(
        server, alice, preset="public_chat", room_version="10", creation_content={"type": "m.space"}
    )
    room = await create_room(server, bob, preset="public_chat", room_version="10")
    await join(server, space, bob)
    await join(server, locked, bob)
    await _link(hs, alice, space, "child", room)
    await _link(hs, alice, locked, "child", room)
    # In ``locked`` no local user may send m.space.child any more: alice stepped down.
    await hs.sender.send(
        locked, EventDraft("m.room.power_levels", alice.user_id, {"users": {alice.user_id: 0}}, "")
    )
    new_room = await _upgraded(server, bob, room, "11")

    assert await _links(hs, space, "child") == {new_room: {"via": [SERVER]}}
    ids = await hs.store.state.get_current_state_ids(space)
    moved = await hs.store.events.get_event(ids[("m.space.child", new_room)])
    assert moved is not None and moved.sender == alice.user_id  # bob has no power there
    assert await _links(hs, locked, "child") == {room: {"via": [SERVER]}}  # nothing forged


@pytest.mark.parametrize(("version", "join_rule"), [("7", "knock"), ("10", "knock_restricted")])
async def test_local_knocks_follow_remote_ones_stay(
    server: TestServer, version: str, join_rule: str
) -> None:
    hs = server.hs
    alice, dave = await server.register("alice"), await server.register("dave")
    room = await create_room(
        server,
        alice,
        room_version=version,
        initial_state=[
            {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": join_rule}}
        ],
    )
    await hs.membership.knock(dave.user_id, room, reason="let me in")
    remote = "@zed:remote.example"
    # a remote knock, as federation would have stored it (built locally for the test)
    await hs.sender.send(room, EventDraft("m.room.member", remote, {"membership": "knock"}, remote))

    new_room = await _upgraded(server, alice, room, "11")

    ids = await hs.store.state.get_current_state_ids(new_room)
    knock = await hs.store.events.get_event(ids[("m.room.member", dave.user_id)])
    assert knock is not None
    assert (knock.sender, knock.content) == (
        dave.user_id,
        {"membership": "knock", "reason": "let me in"},
    )
    # The remote knock is neither made for them nor turned into an invite: the new room has
    # no event about them at all (and so nothing for their server in the outbox).
    about_remote = await hs.store.db.fetchval(
        "SELECT COUNT(*) FROM events WHERE room_id = ? AND state_key = ?", new_room, remote
    )
    assert int(about_remote) == 0
    state = await state_of(hs, room)
    assert state[("m.room.member", remote)] == {"membership": "knock"}


async def test_space_and_child_upgraded_at_once(server: TestServer) -> None:
    """Both upgrades lock both rooms in one order; whichever commits second sees the links
    changed and plans again on them."""
    hs = server.hs
    alice = await server.register("alice")
    space, children = await _space_with_children(server, alice, 2)
    new_space, new_child = await asyncio.gather(
        _upgraded(server, alice, space, "11"), _upgraded(server, alice, children[0], "11")
    )
    assert set(await _links(hs, new_space, "child")) == {new_child, children[1]}
    await _assert_links_live(hs, [new_space, new_child, children[1]])
