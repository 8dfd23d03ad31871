"""Membership endpoints on both engines: join (by ID and alias), leave, invite (and rejecting
it), kick, ban, unban, forget; the auth rules' refusals as 403s, bad input as 400s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.app import Homeserver
from homeserver.config import HomeserverConfig
from homeserver.config.ratelimiting import RateLimit
from homeserver.ratelimit import TokenBucketLimiter
from tests.builders import GENEROUS_LIMITS, generous_config, make_room
from tests.harness import TestServer as Server
from tests.harness import TestUser, make_config


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def membership_of(hs: Homeserver, room_id: str, user_id: str) -> str | None:
    event = await hs.store.state.get_current_state_event(room_id, "m.room.member", user_id)
    return None if event is None else event.membership


async def post(server: Server, user: TestUser, path: str, body: Any = None) -> tuple[int, Any]:
    return await server.call("POST", path, user, json={} if body is None else body)


@pytest.mark.parametrize("version", ["1", "10", "11", "12"])
async def test_join_and_leave_public_room(server: Server, version: str):
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(server.hs, alice.user_id, version=version)
    status, body = await post(server, bob, f"/rooms/{room_id}/join")
    assert status == 200, body
    assert body == {"room_id": room_id}
    assert await membership_of(server.hs, room_id, bob.user_id) == "join"
    status, body = await post(server, bob, f"/rooms/{room_id}/leave", {"reason": "bye"})
    assert status == 200, body
    event = await server.hs.store.state.get_current_state_event(
        room_id, "m.room.member", bob.user_id
    )
    assert event is not None and event.content == {"membership": "leave", "reason": "bye"}


async def test_join_puts_profile_in_member_event(server: Server):
    alice, bob = await server.register("alice"), await server.register("bob")
    await server.hs.store.profiles.set_field(bob.user_id, "displayname", "Bobby")
    room_id = await make_room(server.hs, alice.user_id)
    assert (await post(server, bob, f"/join/{room_id}"))[0] == 200
    event = await server.hs.store.state.get_current_state_event(
        room_id, "m.room.member", bob.user_id
    )
    assert event is not None and event.content["displayname"] == "Bobby"
    # Joining again with nothing changed sends no new event.
    before = await server.hs.store.events.get_max_stream_ordering()
    assert (await post(server, bob, f"/join/{room_id}"))[0] == 200
    assert await server.hs.store.events.get_max_stream_ordering() == before


async def test_join_by_alias(server: Server):
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(server.hs, alice.user_id)
    alias = "#place:test.example"
    await server.hs.store.aliases.create_alias(alias, room_id, alice.user_id, 1)
    status, body = await server.call("POST", "/join/%23place:test.example", bob, json={})
    assert status == 200, body
    assert body["room_id"] == room_id
    status, body = await server.call("POST", "/join/%23nowhere:test.example", bob, json={})
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await server.call("POST", "/join/%23x:elsewhere.example", bob, json={})
    assert status == 404 and body["error"] == "No known servers"


async def test_join_unknown_or_invalid_room(server: Server):
    bob = await server.register("bob")
    status, body = await post(server, bob, "/join/!nope:test.example")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await post(server, bob, "/join/not-a-room")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await server.call("POST", "/join/!nope:test.example", bob, data="{oops")
    assert (status, body["errcode"]) == (400, "M_NOT_JSON")
    status, body = await server.call("POST", "/join/!nope:test.example", None, json={})
    assert status == 401


@pytest.mark.parametrize("version", ["10", "12"])
async def test_invite_only_room(server: Server, version: str):
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(server.hs, alice.user_id, version=version, join_rule="invite")
    status, body = await post(server, bob, f"/rooms/{room_id}/join")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert await membership_of(server.hs, room_id, bob.user_id) is None
    # Bob cannot invite himself or anyone: he is not in the room.
    status, body = await post(server, bob, f"/rooms/{room_id}/invite", {"user_id": bob.user_id})
    assert status == 403
    status, body = await post(
        server, alice, f"/rooms/{room_id}/invite", {"user_id": bob.user_id, "is_direct": True}
    )
    assert status == 200, body
    invite = await server.hs.store.state.get_current_state_event(
        room_id, "m.room.member", bob.user_id
    )
    assert invite is not None and invite.content["is_direct"] is True
    assert invite.content["membership"] == "invite"
    status, body = await post(server, bob, f"/rooms/{room_id}/join")
    assert status == 200, body
    # Inviting a joined user: 403 as Synapse.
    status, body = await post(server, alice, f"/rooms/{room_id}/invite", {"user_id": bob.user_id})
    assert status == 403 and "already in the room" in body["error"]


async def test_reject_invite_with_leave(server: Server):
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(server.hs, alice.user_id, join_rule="invite")
    assert (await post(server, alice, f"/rooms/{room_id}/invite", {"user_id": bob.user_id}))[
        0
    ] == 200
    assert (await post(server, bob, f"/rooms/{room_id}/leave"))[0] == 200
    assert await membership_of(server.hs, room_id, bob.user_id) == "leave"


async def test_invite_bad_bodies(server: Server):
    alice = await server.register("alice")
    room_id = await make_room(server.hs, alice.user_id)
    path = f"/rooms/{room_id}/invite"
    assert (await post(server, alice, path, {}))[1]["errcode"] == "M_MISSING_PARAM"
    status, body = await post(server, alice, path, {"user_id": "bob"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await post(server, alice, path, {"user_id": 7})
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, body = await post(server, alice, path, {"user_id": "@b:test.example", "reason": 1})
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, body = await server.call("POST", path, alice, json=[1])
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, body = await post(
        server, alice, "/rooms/!unknown:test.example/invite", {"user_id": "@b:test.example"}
    )
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await post(server, alice, "/rooms/bad/invite", {"user_id": "@b:test.example"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


@pytest.mark.parametrize("version", ["3", "12"])
async def test_kick_ban_unban(server: Server, version: str):
    alice, bob, carol = [await server.register(n) for n in ("alice", "bob", "carol")]
    room_id = await make_room(server.hs, alice.user_id, version=version)
    for user in (bob, carol):
        assert (await post(server, user, f"/rooms/{room_id}/join"))[0] == 200
    # A non-moderator cannot kick or ban.
    status, body = await post(server, bob, f"/rooms/{room_id}/kick", {"user_id": carol.user_id})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await post(server, bob, f"/rooms/{room_id}/ban", {"user_id": carol.user_id})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # The moderator can.
    status, body = await post(
        server, alice, f"/rooms/{room_id}/kick", {"user_id": carol.user_id, "reason": "spam"}
    )
    assert status == 200, body
    kick = await server.hs.store.state.get_current_state_event(
        room_id, "m.room.member", carol.user_id
    )
    assert kick is not None and kick.content == {"membership": "leave", "reason": "spam"}
    assert kick.sender == alice.user_id
    # Kicking someone not in the room.
    status, body = await post(server, alice, f"/rooms/{room_id}/kick", {"user_id": carol.user_id})
    assert status == 403 and body["error"] == "The target user is not in the room"
    # Ban, then the banned user cannot come back.
    status, body = await post(server, alice, f"/rooms/{room_id}/ban", {"user_id": bob.user_id})
    assert status == 200, body
    assert await membership_of(server.hs, room_id, bob.user_id) == "ban"
    status, body = await post(server, bob, f"/rooms/{room_id}/join")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # Unban needs the ban level: carol (rejoined, PL 0) cannot.
    assert (await post(server, carol, f"/rooms/{room_id}/join"))[0] == 200
    status, body = await post(server, carol, f"/rooms/{room_id}/unban", {"user_id": bob.user_id})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await post(
        server, alice, f"/rooms/{room_id}/unban", {"user_id": bob.user_id, "reason": "ok"}
    )
    assert status == 200, body
    assert await membership_of(server.hs, room_id, bob.user_id) == "leave"
    # Unbanning someone who is not banned (it would be a kick): refused.
    status, body = await post(server, alice, f"/rooms/{room_id}/unban", {"user_id": carol.user_id})
    assert status == 403
    assert await membership_of(server.hs, room_id, carol.user_id) == "join"
    assert (await post(server, bob, f"/rooms/{room_id}/join"))[0] == 200


async def test_forget(server: Server):
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(server.hs, alice.user_id)
    assert (await post(server, bob, f"/rooms/{room_id}/join"))[0] == 200
    status, body = await post(server, bob, f"/rooms/{room_id}/forget")
    assert status == 400, body
    assert (await post(server, bob, f"/rooms/{room_id}/leave"))[0] == 200
    assert (await post(server, bob, f"/rooms/{room_id}/forget"))[0] == 200
    assert await server.hs.store.room_use.is_forgotten(bob.user_id, room_id)
    # Coming back un-forgets.
    assert (await post(server, bob, f"/rooms/{room_id}/join"))[0] == 200
    assert not await server.hs.store.room_use.is_forgotten(bob.user_id, room_id)
    status, body = await post(server, bob, "/rooms/!unknown:test.example/forget")
    assert status == 404


async def test_join_rate_limited(server: Server):
    alice = await server.register("alice")
    rooms = [await make_room(server.hs, alice.user_id) for _ in range(3)]
    server.hs.ratelimiters.joins_local = TokenBucketLimiter(RateLimit(0.001, 2))
    bob = await server.register("bob")
    results = [await post(server, bob, f"/rooms/{r}/join") for r in rooms]
    assert [s for s, _ in results] == [200, 200, 429]
    assert results[2][1]["errcode"] == "M_LIMIT_EXCEEDED"


def test_generous_limits_are_config_keys():
    assert set(GENEROUS_LIMITS) <= {
        "rc_message",
        "rc_joins",
        "rc_room_creation",
        "rc_invites",
        "rc_to_device",
        "rc_login",
    }
    make_config(Path("/tmp"), **GENEROUS_LIMITS)
