"""One membership gate, on both engines: ``PUT /rooms/{id}/state/m.room.member/{user}`` goes
through the same checks as the dedicated endpoints (restricted rooms, admin blocks, the join
rate limit, the same errors), restricted rooms admit members of the allowed rooms with an
authoriser the server picks itself, and ``POST /knock``."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.app import Homeserver
from homeserver.config import HomeserverConfig
from homeserver.config.ratelimiting import RateLimit
from homeserver.events.event import Event
from homeserver.ratelimit import TokenBucketLimiter
from tests.builders import generous_config, make_room
from tests.harness import TestServer as Server
from tests.harness import TestUser

NOT_IN_ALLOWED_ROOM = "You do not belong to any of the required rooms/spaces to join this room."


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def member_event(hs: Homeserver, room_id: str, user_id: str) -> Event | None:
    return await hs.store.state.get_current_state_event(room_id, "m.room.member", user_id)


async def membership_of(hs: Homeserver, room_id: str, user_id: str) -> str | None:
    event = await member_event(hs, room_id, user_id)
    return None if event is None else event.membership


async def post(server: Server, user: TestUser, path: str, body: Any = None) -> tuple[int, Any]:
    return await server.call("POST", path, user, json={} if body is None else body)


async def put_member(
    server: Server, user: TestUser, room_id: str, target: str, content: dict[str, Any]
) -> tuple[int, Any]:
    path = f"/rooms/{quote(room_id)}/state/m.room.member/{quote(target)}"
    return await server.call("PUT", path, user, json=content)


async def restricted_setup(
    server: Server, *, version: str = "10", join_rule: str = "restricted"
) -> tuple[TestUser, TestUser, TestUser, str, str]:
    """alice owns a space and a room restricted to its members; bob is in the space, eve is
    not. Returns (alice, bob, eve, space_id, room_id)."""
    alice, bob, eve = [await server.register(n) for n in ("alice", "bob", "eve")]
    space = await make_room(server.hs, alice.user_id, version=version)
    assert (await post(server, bob, f"/rooms/{space}/join"))[0] == 200
    room_id = await make_room(
        server.hs,
        alice.user_id,
        version=version,
        join_rule=join_rule,
        allow=[{"type": "m.room_membership", "room_id": space}],
    )
    return alice, bob, eve, space, room_id


# --- the state PUT bypasses ----------------------------------------------------------------------
async def test_state_put_cannot_bypass_restricted_room(server: Server) -> None:
    alice, _bob, eve, _space, room_id = await restricted_setup(server)
    content = {"membership": "join", "join_authorised_via_users_server": alice.user_id}
    status, body = await put_member(server, eve, room_id, eve.user_id, content)
    assert (status, body["errcode"], body["error"]) == (403, "M_FORBIDDEN", NOT_IN_ALLOWED_ROOM)
    assert await membership_of(server.hs, room_id, eve.user_id) is None
    status, body = await post(server, eve, f"/rooms/{room_id}/join")
    assert (status, body["error"]) == (403, NOT_IN_ALLOWED_ROOM)


async def test_state_put_cannot_rejoin_blocked_room(server: Server) -> None:
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(server.hs, alice.user_id)
    assert (await post(server, bob, f"/rooms/{room_id}/join"))[0] == 200
    assert (await post(server, bob, f"/rooms/{room_id}/leave"))[0] == 200
    await server.hs.store.room_deletions.block_room(room_id, alice.user_id, server.hs.clock())
    status, body = await put_member(server, bob, room_id, bob.user_id, {"membership": "join"})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert body["error"] == "This room has been blocked on this server"
    assert await membership_of(server.hs, room_id, bob.user_id) == "leave"
    # A profile change of a member is refused too (as Synapse: only leave and ban pass).
    status, body = await put_member(
        server, alice, room_id, alice.user_id, {"membership": "join", "displayname": "A"}
    )
    assert status == 403, body
    status, body = await put_member(server, alice, room_id, alice.user_id, {"membership": "leave"})
    assert status == 200, body


async def test_state_put_honours_join_rate_limit(server: Server) -> None:
    alice = await server.register("alice")
    rooms = [await make_room(server.hs, alice.user_id) for _ in range(3)]
    server.hs.ratelimiters.joins_local = TokenBucketLimiter(RateLimit(0.001, 2))
    bob = await server.register("bob")
    results = [await put_member(server, bob, r, bob.user_id, {"membership": "join"}) for r in rooms]
    assert [s for s, _ in results] == [200, 200, 429]
    assert results[2][1]["errcode"] == "M_LIMIT_EXCEEDED"
    # A profile change of a joined member is not a join: not limited.
    status, body = await put_member(
        server, bob, rooms[0], bob.user_id, {"membership": "join", "displayname": "Bob"}
    )
    assert status == 200, body
    event = await member_event(server.hs, rooms[0], bob.user_id)
    assert event is not None and event.event_id == body["event_id"]
    assert event.content == {"membership": "join", "displayname": "Bob"}


@pytest.mark.parametrize("forged", ["mallory", "@x:evil.example", 7])
async def test_forged_authoriser_is_never_used(server: Server, forged: Any) -> None:
    alice, bob, _eve, _space, room_id = await restricted_setup(server)
    mallory = await server.register("mallory")
    via = mallory.user_id if forged == "mallory" else forged
    content = {"membership": "join", "join_authorised_via_users_server": via}
    status, body = await put_member(server, bob, room_id, bob.user_id, content)
    assert status == 200, body
    event = await member_event(server.hs, room_id, bob.user_id)
    assert event is not None and event.event_id == body["event_id"]
    assert event.content["join_authorised_via_users_server"] == alice.user_id


async def test_forged_authoriser_dropped_where_none_is_needed(server: Server) -> None:
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(server.hs, alice.user_id)
    content = {"membership": "join", "join_authorised_via_users_server": alice.user_id}
    status, body = await put_member(server, bob, room_id, bob.user_id, content)
    assert status == 200, body
    event = await member_event(server.hs, room_id, bob.user_id)
    assert event is not None and event.content == {"membership": "join"}
    # Nor on any other membership.
    for membership in ("leave", "invite", "ban"):
        content = {"membership": membership, "join_authorised_via_users_server": alice.user_id}
        status, body = await put_member(server, alice, room_id, bob.user_id, content)
        assert status == 200, (membership, body)
        event = await member_event(server.hs, room_id, bob.user_id)
        assert event is not None and event.content == {"membership": membership}


# --- restricted rooms ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("version", "join_rule"),
    [
        ("8", "restricted"),
        ("9", "restricted"),
        ("10", "restricted"),
        ("10", "knock_restricted"),
        ("11", "restricted"),
        ("12", "restricted"),
        ("12", "knock_restricted"),
    ],
)
async def test_member_of_allowed_room_joins(server: Server, version: str, join_rule: str) -> None:
    alice, bob, eve, _space, room_id = await restricted_setup(
        server, version=version, join_rule=join_rule
    )
    status, body = await post(server, bob, f"/join/{room_id}")
    assert status == 200, body
    event = await member_event(server.hs, room_id, bob.user_id)
    assert event is not None and event.membership == "join"
    assert event.content["join_authorised_via_users_server"] == alice.user_id
    status, body = await post(server, eve, f"/rooms/{room_id}/join")
    assert (status, body["errcode"], body["error"]) == (403, "M_FORBIDDEN", NOT_IN_ALLOWED_ROOM)
    # Leaving and coming back works the same way; an invited user needs no authoriser.
    assert (await post(server, bob, f"/rooms/{room_id}/leave"))[0] == 200
    assert (await post(server, bob, f"/rooms/{room_id}/join"))[0] == 200
    assert (await post(server, alice, f"/rooms/{room_id}/invite", {"user_id": eve.user_id}))[
        0
    ] == 200
    status, body = await post(server, eve, f"/rooms/{room_id}/join")
    assert status == 200, body
    event = await member_event(server.hs, room_id, eve.user_id)
    assert event is not None and "join_authorised_via_users_server" not in event.content


async def test_restricted_join_needs_a_local_user_who_can_invite(server: Server) -> None:
    alice, bob, eve = [await server.register(n) for n in ("alice", "bob", "eve")]
    space = await make_room(server.hs, alice.user_id)
    assert (await post(server, bob, f"/rooms/{space}/join"))[0] == 200
    # Nobody may invite (the level is above everyone's), so no one can authorise a join.
    room_id = await make_room(
        server.hs,
        alice.user_id,
        join_rule="restricted",
        allow=[{"type": "m.room_membership", "room_id": space}],
        power_levels={"invite": 101},
    )
    status, body = await post(server, bob, f"/join/{room_id}")
    assert (status, body["errcode"]) == (400, "M_UNABLE_TO_GRANT_JOIN"), body
    assert await membership_of(server.hs, room_id, bob.user_id) is None
    del eve


async def test_restricted_room_with_unusable_allow_list(server: Server) -> None:
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(
        server.hs,
        alice.user_id,
        join_rule="restricted",
        allow=[{"type": "m.something", "room_id": "!x:test.example"}, "junk", {"type": 1}],  # type: ignore[list-item]
    )
    status, body = await post(server, bob, f"/join/{room_id}")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


async def test_restricted_rule_ignored_before_v8(server: Server) -> None:
    alice, bob, _eve, _space, _room = await restricted_setup(server)
    old = await make_room(server.hs, alice.user_id, version="7", join_rule="restricted")
    status, body = await post(server, bob, f"/join/{old}")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert await membership_of(server.hs, old, bob.user_id) is None


# --- knock ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("version", "join_rule"), [("7", "knock"), ("10", "knock_restricted")])
async def test_knock(server: Server, version: str, join_rule: str) -> None:
    alice, bob, eve, _space, room_id = await restricted_setup(
        server, version=version, join_rule=join_rule
    )
    status, body = await post(server, eve, f"/knock/{room_id}", {"reason": "let me in"})
    assert status == 200, body
    assert body == {"room_id": room_id}
    event = await member_event(server.hs, room_id, eve.user_id)
    assert event is not None and event.membership == "knock"
    assert event.content["reason"] == "let me in"
    # Knocking again while knocking is refused by the auth rules? No: a knock over a knock
    # is allowed; but a joined user cannot knock.
    status, body = await post(server, alice, f"/knock/{room_id}")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # The knock is accepted with an invite; it can also be withdrawn with a leave.
    assert (await post(server, alice, f"/rooms/{room_id}/invite", {"user_id": eve.user_id}))[
        0
    ] == 200
    assert (await post(server, eve, f"/rooms/{room_id}/join"))[0] == 200
    if join_rule == "knock_restricted":
        status, body = await post(server, bob, f"/join/{room_id}")
        assert status == 200, body
    else:
        status, body = await post(server, bob, f"/join/{room_id}")
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
        assert (await post(server, bob, f"/knock/{room_id}"))[0] == 200
        assert (await post(server, bob, f"/rooms/{room_id}/leave"))[0] == 200
        assert await membership_of(server.hs, room_id, bob.user_id) == "leave"


@pytest.mark.parametrize(
    ("version", "join_rule"),
    [
        ("10", "public"),
        ("10", "invite"),
        ("10", "restricted"),
        ("6", "knock"),
        ("9", "knock_restricted"),
    ],
)
async def test_knock_refused_where_the_rules_forbid(
    server: Server, version: str, join_rule: str
) -> None:
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(server.hs, alice.user_id, version=version, join_rule=join_rule)
    status, body = await post(server, bob, f"/knock/{room_id}")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
    assert await membership_of(server.hs, room_id, bob.user_id) is None


async def test_knock_bad_requests(server: Server) -> None:
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(server.hs, alice.user_id, join_rule="knock")
    status, body = await post(server, bob, "/knock/not-a-room")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await post(server, bob, "/knock/!unknown:test.example")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await post(server, bob, f"/knock/{room_id}", {"reason": 5})
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, body = await server.call("POST", f"/knock/{room_id}", None, json={})
    assert status == 401
    await server.hs.store.room_deletions.block_room(room_id, alice.user_id, server.hs.clock())
    status, body = await post(server, bob, f"/knock/{room_id}")
    assert (status, body["error"]) == (403, "This room has been blocked on this server")
    # By alias.
    other = await make_room(server.hs, alice.user_id, join_rule="knock")
    await server.hs.store.aliases.create_alias("#k:test.example", other, alice.user_id, 1)
    status, body = await server.call("POST", "/knock/%23k:test.example", bob, json={})
    assert (status, body) == (200, {"room_id": other})


async def test_state_put_knock(server: Server) -> None:
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(server.hs, alice.user_id, join_rule="knock")
    status, body = await put_member(server, bob, room_id, bob.user_id, {"membership": "knock"})
    assert status == 200, body
    assert await membership_of(server.hs, room_id, bob.user_id) == "knock"
    # The same knock again makes no new event; another reason does.
    again = await put_member(server, bob, room_id, bob.user_id, {"membership": "knock"})
    assert again == (200, body)
    status, other = await post(server, bob, f"/knock/{room_id}", {"reason": "please"})
    assert status == 200, other
    event = await member_event(server.hs, room_id, bob.user_id)
    assert event is not None and event.event_id != body["event_id"]
    assert event.content == {"membership": "knock", "reason": "please"}
    # Knocking for someone else is refused.
    status, body = await put_member(server, alice, room_id, bob.user_id, {"membership": "knock"})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


# --- the state PUT behaves like the dedicated endpoints -----------------------------------------
#: (action, the membership the state PUT sends, the target's membership before). A PUT of
#: "leave" for a user who already left is a kick (it cannot be told from an unban).
ACTIONS = [
    ("invite", "invite", None),
    ("invite", "invite", "join"),
    ("invite", "invite", "ban"),
    ("kick", "leave", "join"),
    ("kick", "leave", None),
    ("kick", "leave", "leave"),
    ("ban", "ban", "join"),
    ("ban", "ban", None),
    ("unban", "leave", "ban"),
]


async def _target_in_state(
    server: Server, alice: TestUser, carol: TestUser, room_id: str, before: str | None
) -> None:
    if before in ("join", "leave", "ban"):
        assert (await post(server, carol, f"/rooms/{room_id}/join"))[0] == 200
    if before == "leave":
        assert (await post(server, carol, f"/rooms/{room_id}/leave"))[0] == 200
    if before == "ban":
        assert (await post(server, alice, f"/rooms/{room_id}/ban", {"user_id": carol.user_id}))[
            0
        ] == 200


@pytest.mark.parametrize(("action", "membership", "before"), ACTIONS)
@pytest.mark.parametrize("actor", ["alice", "bob"])
async def test_state_put_matches_dedicated_endpoints(
    server: Server, action: str, membership: str, before: str | None, actor: str
) -> None:
    alice, bob, carol = [await server.register(n) for n in ("alice", "bob", "carol")]
    results = []
    for way in ("endpoint", "put"):
        room_id = await make_room(server.hs, alice.user_id)
        assert (await post(server, bob, f"/rooms/{room_id}/join"))[0] == 200
        await _target_in_state(server, alice, carol, room_id, before)
        user = alice if actor == "alice" else bob
        if way == "endpoint":
            status, body = await post(
                server, user, f"/rooms/{room_id}/{action}", {"user_id": carol.user_id}
            )
        else:
            status, body = await put_member(
                server, user, room_id, carol.user_id, {"membership": membership}
            )
        after = await membership_of(server.hs, room_id, carol.user_id)
        results.append((status, body.get("errcode"), body.get("error"), after))
    assert results[0] == results[1]


async def test_state_put_leave_and_bad_bodies(server: Server) -> None:
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(server.hs, alice.user_id)
    assert (await post(server, bob, f"/rooms/{room_id}/join"))[0] == 200
    status, body = await put_member(
        server, bob, room_id, bob.user_id, {"membership": "leave", "reason": "bye"}
    )
    assert status == 200, body
    event = await member_event(server.hs, room_id, bob.user_id)
    assert event is not None and event.content == {"membership": "leave", "reason": "bye"}
    for content, errcode in [
        ({}, "M_BAD_JSON"),
        ({"membership": 1}, "M_BAD_JSON"),
        ({"membership": "dance"}, "M_BAD_JSON"),
    ]:
        status, body = await put_member(server, bob, room_id, bob.user_id, content)
        assert (status, body["errcode"]) == (400, errcode), content
    status, body = await put_member(server, bob, room_id, "not-a-user", {"membership": "leave"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    # Joining someone else in is never a thing.
    status, body = await put_member(server, alice, room_id, bob.user_id, {"membership": "join"})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
