"""Aliases, directory visibility and /publicRooms on both engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig
from tests.builders import join
from tests.harness import TestServer as Server
from tests.harness import TestUser as User
from tests.harness import make_config
from tests.rooms.api.helpers import state_content

ALIAS = "#lobby:test.example"
ALIAS_PATH = "/directory/room/%23lobby%3Atest.example"


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return make_config(tmp_path, rc_room_creation={"per_second": 1000, "burst_count": 1000})


async def create(server: Server, user: User, body: dict[str, Any]) -> str:
    status, response = await server.call("POST", "/createRoom", user, json=body)
    assert status == 200, response
    return response["room_id"]


# --- aliases ----------------------------------------------------------------------------------
async def test_alias_create_resolve_delete(server: Server):
    alice = await server.register("alice")
    room_id = await create(server, alice, {"preset": "public_chat"})
    status, body = await server.call("PUT", ALIAS_PATH, alice, json={"room_id": room_id})
    assert (status, body) == (200, {})
    status, body = await server.call("GET", ALIAS_PATH)
    assert (status, body) == (200, {"room_id": room_id, "servers": ["test.example"]})
    status, body = await server.call("GET", f"/rooms/{room_id}/aliases", alice)
    assert (status, body) == (200, {"aliases": [ALIAS]})
    status, body = await server.call("PUT", ALIAS_PATH, alice, json={"room_id": room_id})
    assert status == 409
    assert body == {"errcode": "M_UNKNOWN", "error": f"Room alias {ALIAS} already exists"}
    status, body = await server.call("DELETE", ALIAS_PATH, alice)
    assert (status, body) == (200, {})
    status, body = await server.call("GET", ALIAS_PATH)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await server.call("DELETE", ALIAS_PATH, alice)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"


async def test_resolve_lists_servers_of_members(server: Server):
    alice = await server.register("alice")
    room_id = await create(server, alice, {"preset": "public_chat", "room_alias_name": "lobby"})
    await join(server.hs, room_id, "@zed:remote.example")
    status, body = await server.call("GET", ALIAS_PATH)
    assert status == 200
    assert body == {"room_id": room_id, "servers": ["test.example", "remote.example"]}


@pytest.mark.parametrize(
    ("alias", "errcode"),
    [
        ("lobby", "M_INVALID_PARAM"),
        ("%23lobby", "M_INVALID_PARAM"),
        ("%23lobby%3Aother.example", "M_INVALID_PARAM"),
        ("%23lobby%3Abad%20server", "M_INVALID_PARAM"),
    ],
)
async def test_put_refuses_bad_or_remote_aliases(server: Server, alias: str, errcode: str):
    alice = await server.register("alice")
    room_id = await create(server, alice, {})
    status, body = await server.call(
        "PUT", f"/directory/room/{alias}", alice, json={"room_id": room_id}
    )
    assert status == 400 and body["errcode"] == errcode
    assert await server.hs.store.db.fetchval("SELECT COUNT(*) FROM room_aliases") == 0


async def test_put_needs_membership_and_a_known_room(server: Server):
    alice = await server.register("alice")
    mallory = await server.register("mallory")
    room_id = await create(server, alice, {})
    status, body = await server.call("PUT", ALIAS_PATH, mallory, json={"room_id": room_id})
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    status, body = await server.call(
        "PUT", ALIAS_PATH, alice, json={"room_id": "!nope:test.example"}
    )
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    for bad in ({}, {"room_id": 5}, {"room_id": "nope"}):
        status, body = await server.call("PUT", ALIAS_PATH, alice, json=bad)
        assert status == 400, bad
    status, body = await server.call("PUT", ALIAS_PATH, json={"room_id": room_id})
    assert status == 401
    # A server admin may alias a room they are not in.
    admin = await server.register("admin", admin=True)
    status, body = await server.call("PUT", ALIAS_PATH, admin, json={"room_id": room_id})
    assert status == 200


async def test_delete_permissions(server: Server):
    alice = await server.register("alice")
    bob = await server.register("bob")
    mallory = await server.register("mallory")
    room_id = await create(server, alice, {"preset": "public_chat"})
    await join(server.hs, room_id, bob.user_id)
    await join(server.hs, room_id, mallory.user_id)
    # bob (a plain member) creates the alias; mallory (another plain member) may not delete it
    status, _ = await server.call("PUT", ALIAS_PATH, bob, json={"room_id": room_id})
    assert status == 200
    status, body = await server.call("DELETE", ALIAS_PATH, mallory)
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    # the room's creator (able to send m.room.canonical_alias) may
    status, _ = await server.call("DELETE", ALIAS_PATH, alice)
    assert status == 200
    # the alias creator may delete their own
    await server.call("PUT", ALIAS_PATH, bob, json={"room_id": room_id})
    status, _ = await server.call("DELETE", ALIAS_PATH, bob)
    assert status == 200
    # and so may a server admin
    await server.call("PUT", ALIAS_PATH, bob, json={"room_id": room_id})
    admin = await server.register("admin", admin=True)
    status, _ = await server.call("DELETE", ALIAS_PATH, admin)
    assert status == 200


async def test_deleting_the_canonical_alias_updates_the_room(server: Server):
    alice = await server.register("alice")
    room_id = await create(server, alice, {"room_alias_name": "lobby"})
    assert (await state_content(server.hs, room_id, "m.room.canonical_alias")) == {"alias": ALIAS}
    status, _ = await server.call("DELETE", ALIAS_PATH, alice)
    assert status == 200
    assert (await state_content(server.hs, room_id, "m.room.canonical_alias")) == {}


async def test_room_aliases_visibility(server: Server):
    alice = await server.register("alice")
    mallory = await server.register("mallory")
    room_id = await create(server, alice, {"room_alias_name": "lobby"})
    status, body = await server.call("GET", f"/rooms/{room_id}/aliases", mallory)
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    status, body = await server.call("GET", "/rooms/!unknown:test.example/aliases", alice)
    assert status == 403
    status, body = await server.call("GET", "/rooms/not-a-room/aliases", alice)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    readable = await create(
        server,
        alice,
        {
            "room_alias_name": "open",
            "initial_state": [
                {
                    "type": "m.room.history_visibility",
                    "content": {"history_visibility": "world_readable"},
                }
            ],
        },
    )
    status, body = await server.call("GET", f"/rooms/{readable}/aliases", mallory)
    assert (status, body) == (200, {"aliases": ["#open:test.example"]})


# --- directory visibility ---------------------------------------------------------------------
async def test_visibility_get_and_put(server: Server):
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await create(server, alice, {"preset": "public_chat"})
    await join(server.hs, room_id, bob.user_id)
    path = f"/directory/list/room/{room_id}"
    assert await server.call("GET", path) == (200, {"visibility": "private"})
    status, body = await server.call("PUT", path, bob, json={"visibility": "public"})
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    status, body = await server.call("PUT", path, alice, json={"visibility": "hidden"})
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    assert await server.call("PUT", path, alice, json={"visibility": "public"}) == (200, {})
    assert await server.call("GET", path) == (200, {"visibility": "public"})
    admin = await server.register("admin", admin=True)
    assert await server.call("PUT", path, admin, json={"visibility": "private"}) == (200, {})
    assert await server.call("GET", path) == (200, {"visibility": "private"})
    status, body = await server.call("GET", "/directory/list/room/!nope:test.example")
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await server.call("GET", "/directory/list/room/nope")
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    status, body = await server.call("PUT", path, json={"visibility": "public"})
    assert status == 401


# --- /publicRooms -----------------------------------------------------------------------------
async def _three_public_rooms(server: Server) -> tuple[User, list[str]]:
    alice = await server.register("alice")
    big = await create(
        server,
        alice,
        {"visibility": "public", "name": "Big Hall", "topic": "Everyone", "room_alias_name": "big"},
    )
    for user in ("@u1:test.example", "@u2:test.example"):
        await join(server.hs, big, user)
    mid = await create(
        server,
        alice,
        {
            "visibility": "public",
            "name": "Garden",
            "creation_content": {"type": "m.space"},
            "initial_state": [
                {"type": "m.room.avatar", "content": {"url": "mxc://test.example/a"}},
                {
                    "type": "m.room.history_visibility",
                    "content": {"history_visibility": "world_readable"},
                },
            ],
        },
    )
    await join(server.hs, mid, "@u1:test.example")
    small = await create(server, alice, {"visibility": "public", "topic": "quiet corner"})
    await create(server, alice, {"visibility": "private", "name": "Hidden Hall"})
    return alice, [big, mid, small]


async def test_public_rooms_entries_and_order(server: Server):
    alice, (big, mid, small) = await _three_public_rooms(server)
    status, body = await server.call("GET", "/publicRooms", alice)
    assert status == 200
    assert [e["room_id"] for e in body["chunk"]] == [big, mid, small]
    assert body["total_room_count_estimate"] == 3
    assert "next_batch" not in body and "prev_batch" not in body
    first, second, third = body["chunk"]
    assert first == {
        "room_id": big,
        "name": "Big Hall",
        "topic": "Everyone",
        "canonical_alias": "#big:test.example",
        "num_joined_members": 3,
        "world_readable": False,
        "guest_can_join": False,
        "join_rule": "public",
    }
    assert second["room_type"] == "m.space" and second["world_readable"] is True
    assert second["avatar_url"] == "mxc://test.example/a"
    assert third["num_joined_members"] == 1 and "name" not in third


async def test_public_rooms_pagination(server: Server):
    alice, (big, mid, small) = await _three_public_rooms(server)
    status, page = await server.call("GET", "/publicRooms", alice, params={"limit": "2"})
    assert [e["room_id"] for e in page["chunk"]] == [big, mid]
    assert "prev_batch" not in page
    status, rest = await server.call(
        "GET", "/publicRooms", alice, params={"limit": "2", "since": page["next_batch"]}
    )
    assert [e["room_id"] for e in rest["chunk"]] == [small]
    assert "next_batch" not in rest
    status, back = await server.call(
        "POST", "/publicRooms", alice, json={"limit": 2, "since": rest["prev_batch"]}
    )
    assert status == 200
    assert [e["room_id"] for e in back["chunk"]] == [big, mid]


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ({"generic_search_term": "hall"}, [0]),
        ({"generic_search_term": "QUIET"}, [2]),
        ({"generic_search_term": "#big"}, [0]),
        ({"generic_search_term": "nothing matches"}, []),
        ({"room_types": ["m.space"]}, [1]),
        ({"room_types": [None]}, [0, 2]),
        ({}, [0, 1, 2]),
    ],
)
async def test_public_rooms_filter(server: Server, filter_: dict[str, Any], expected: list[int]):
    alice, rooms = await _three_public_rooms(server)
    status, body = await server.call("POST", "/publicRooms", alice, json={"filter": filter_})
    assert status == 200
    assert [e["room_id"] for e in body["chunk"]] == [rooms[i] for i in expected]
    assert body["total_room_count_estimate"] == len(expected)


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("GET", {"params": {"limit": "many"}}),
        ("GET", {"params": {"limit": "-1"}}),
        ("GET", {"params": {"since": "garbage"}}),
        ("GET", {"params": {"server": "other.example"}}),
        ("POST", {"json": {"limit": "2"}}),
        ("POST", {"json": {"limit": True}}),
        ("POST", {"json": {"since": 5}}),
        ("POST", {"json": {"filter": "x"}}),
        ("POST", {"json": {"filter": {"generic_search_term": 5}}}),
        ("POST", {"json": {"filter": {"room_types": "m.space"}}}),
    ],
)
async def test_public_rooms_bad_input(server: Server, method: str, kwargs: dict[str, Any]):
    alice = await server.register("alice")
    status, body = await server.call(method, "/publicRooms", alice, **kwargs)
    assert status == 400 and body["errcode"] in ("M_INVALID_PARAM", "M_BAD_JSON")


async def test_public_rooms_auth(server: Server):
    # A token is needed unless allow_public_rooms_without_auth (tests/hardening).
    status, body = await server.call("GET", "/publicRooms")
    assert status == 401
    status, body = await server.call("POST", "/publicRooms", json={})
    assert status == 401
    status, body = await server.call(
        "GET", "/publicRooms", headers={"Authorization": "Bearer wrong"}
    )
    assert status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN"
