"""``GET /_synapse/admin/v1/rooms`` (search, order, paging), room details, members and state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig
from tests.admin.helpers import V1, join
from tests.builders import create_room, generous_config
from tests.harness import TestServer, TestUser

SUMMARY_KEYS = {
    "room_id",
    "name",
    "canonical_alias",
    "joined_members",
    "joined_local_members",
    "version",
    "creator",
    "encryption",
    "federatable",
    "public",
    "join_rules",
    "guest_access",
    "history_visibility",
    "state_events",
    "room_type",
}


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def _rooms(server: TestServer, admin: TestUser, **params: str) -> dict[str, Any]:
    status, body = await server.call("GET", f"{V1}/rooms", admin, params=params)
    assert status == 200, body
    return body


async def _three_rooms(server: TestServer) -> tuple[TestUser, dict[str, str]]:
    """Rooms "Apple" (public, 3 members, alias #fruit), "banana" (private, 1) and an unnamed
    one (private, encrypted, 2 members)."""
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    apple = await create_room(
        server,
        alice,
        name="Apple",
        preset="public_chat",
        visibility="public",
        room_alias_name="fruit",
        room_version="10",
    )
    await join(server, bob, apple)
    await join(server, carol, apple)
    banana = await create_room(server, bob, name="banana")
    unnamed = await create_room(
        server,
        carol,
        preset="private_chat",
        initial_state=[
            {"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
        ],
    )
    status, _ = await server.call(
        "POST", f"/rooms/{unnamed}/invite", carol, json={"user_id": alice.user_id}
    )
    assert status == 200
    await join(server, alice, unnamed)
    return admin, {"apple": apple, "banana": banana, "unnamed": unnamed}


async def test_list_has_synapse_keys_and_values(server: TestServer) -> None:
    admin, ids = await _three_rooms(server)
    body = await _rooms(server, admin)
    assert body["total_rooms"] == 3 and body["offset"] == 0
    assert "next_batch" not in body and "prev_batch" not in body
    by_id = {room["room_id"]: room for room in body["rooms"]}
    assert set(by_id) == set(ids.values())
    for room in body["rooms"]:
        assert set(room) == SUMMARY_KEYS
    apple = by_id[ids["apple"]]
    assert apple == {
        "room_id": ids["apple"],
        "name": "Apple",
        "canonical_alias": "#fruit:test.example",
        "joined_members": 3,
        "joined_local_members": 3,
        "version": "10",
        "creator": "@alice:test.example",
        "encryption": None,
        "federatable": True,
        "public": True,
        "join_rules": "public",
        "guest_access": None,
        "history_visibility": "shared",
        "state_events": apple["state_events"],
        "room_type": None,
    }
    # create, 3 members, power levels, alias, join rules, history visibility, name
    assert apple["state_events"] == 9
    unnamed = by_id[ids["unnamed"]]
    assert unnamed["encryption"] == "m.megolm.v1.aes-sha2"
    assert unnamed["join_rules"] == "invite" and unnamed["guest_access"] == "can_join"
    # By name ascending (the default), rooms without a name last.
    assert [r["room_id"] for r in body["rooms"]] == [ids["apple"], ids["banana"], ids["unnamed"]]


@pytest.mark.parametrize(
    ("order_by", "direction", "expected"),
    [
        ("name", "f", ["apple", "banana", "unnamed"]),
        ("name", "b", ["banana", "apple", "unnamed"]),
        ("joined_members", "f", ["apple", "unnamed", "banana"]),
        ("joined_members", "b", ["banana", "unnamed", "apple"]),
        ("size", "f", ["apple", "unnamed", "banana"]),
        ("public", "b", ["apple"]),
        ("encryption", "f", ["unnamed"]),
        ("canonical_alias", "f", ["apple"]),
        ("creator", "f", ["apple", "banana", "unnamed"]),
        ("join_rules", "b", ["apple"]),
    ],
)
async def test_ordering(
    server: TestServer, order_by: str, direction: str, expected: list[str]
) -> None:
    admin, ids = await _three_rooms(server)
    body = await _rooms(server, admin, order_by=order_by, dir=direction)
    got = [r["room_id"] for r in body["rooms"]]
    # Only the rooms named are pinned down (the others tie, or sort on their room ID).
    assert got[: len(expected)] == [ids[name] for name in expected]


async def test_paging(server: TestServer) -> None:
    admin, ids = await _three_rooms(server)
    first = await _rooms(server, admin, limit="2")
    assert len(first["rooms"]) == 2 and first["next_batch"] == 2 and "prev_batch" not in first
    second = await _rooms(server, admin, limit="2", **{"from": "2"})
    assert len(second["rooms"]) == 1 and "next_batch" not in second
    assert second["prev_batch"] == 0 and second["offset"] == 2
    seen = [r["room_id"] for r in first["rooms"] + second["rooms"]]
    assert sorted(seen) == sorted(ids.values())
    empty = await _rooms(server, admin, **{"from": "10"})
    assert empty["rooms"] == [] and empty["total_rooms"] == 3 and empty["prev_batch"] == 0


async def test_search_and_filters(server: TestServer) -> None:
    admin, ids = await _three_rooms(server)

    async def found(**params: str) -> set[str]:
        body = await _rooms(server, admin, **params)
        assert body["total_rooms"] == len(body["rooms"])
        names = {v: k for k, v in ids.items()}
        return {names[r["room_id"]] for r in body["rooms"]}

    assert await found(search_term="APP") == {"apple"}
    assert await found(search_term="an") == {"banana"}
    assert await found(search_term="fru") == {"apple"}  # the alias's localpart
    assert await found(search_term=ids["unnamed"]) == {"unnamed"}  # exactly the room ID
    assert await found(search_term=ids["unnamed"][:6]) == set()
    assert await found(public_rooms="true") == {"apple"}
    assert await found(public_rooms="false") == {"banana", "unnamed"}
    assert await found(empty_rooms="false") == {"apple", "banana", "unnamed"}
    assert await found(empty_rooms="true") == set()


@pytest.mark.parametrize(
    "params",
    [
        {"order_by": "nonsense"},
        {"dir": "x"},
        {"from": "-1"},
        {"limit": "ten"},
        {"public_rooms": "yes"},
        {"search_term": ""},
    ],
)
async def test_bad_parameters_are_400(server: TestServer, params: dict[str, str]) -> None:
    admin = await server.register("root", admin=True)
    status, body = await server.call("GET", f"{V1}/rooms", admin, params=params)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM", body


async def test_room_details_members_and_state(server: TestServer) -> None:
    admin, ids = await _three_rooms(server)
    apple = ids["apple"]
    await server.call(
        "PUT", f"/rooms/{apple}/state/m.room.topic", await server.register("x"), json={}
    )  # refused (not a member): no effect
    status, details = await server.call("GET", f"{V1}/rooms/{apple}", admin)
    assert status == 200, details
    assert SUMMARY_KEYS <= set(details)
    assert details["topic"] is None and details["avatar"] is None
    assert details["joined_local_devices"] == 3  # one device each (the harness's)
    assert details["forgotten"] is False
    assert details["tombstoned"] is False and details["replacement_room"] is None

    status, members = await server.call("GET", f"{V1}/rooms/{apple}/members", admin)
    assert status == 200
    assert members == {
        "members": ["@alice:test.example", "@bob:test.example", "@carol:test.example"],
        "total": 3,
    }

    status, state = await server.call("GET", f"{V1}/rooms/{apple}/state", admin)
    assert status == 200
    types = sorted((e["type"], e["state_key"]) for e in state["state"])
    assert ("m.room.create", "") in types and ("m.room.member", "@bob:test.example") in types
    assert len(types) == details["state_events"]
    for event in state["state"]:
        assert {"event_id", "room_id", "sender", "content", "origin_server_ts"} <= set(event)
    status, only = await server.call(
        "GET", f"{V1}/rooms/{apple}/state", admin, params={"type": "m.room.member"}
    )
    assert sorted(e["state_key"] for e in only["state"]) == members["members"]


async def test_details_after_an_upgrade_show_the_tombstone(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    alice = await server.register("alice2")
    room = await create_room(server, alice, name="old")
    status, body = await server.call(
        "POST", f"/rooms/{room}/upgrade", alice, json={"new_version": "11"}
    )
    assert status == 200, body
    status, details = await server.call("GET", f"{V1}/rooms/{room}", admin)
    assert details["tombstoned"] is True
    assert details["replacement_room"] == body["replacement_room"]


async def test_forgotten_once_every_local_member_forgot(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    room = await create_room(server, alice, name="bye")
    await server.call("POST", f"/rooms/{room}/leave", alice, json={})
    _, details = await server.call("GET", f"{V1}/rooms/{room}", admin)
    assert details["forgotten"] is False and details["joined_members"] == 0
    await server.call("POST", f"/rooms/{room}/forget", alice, json={})
    _, details = await server.call("GET", f"{V1}/rooms/{room}", admin)
    assert details["forgotten"] is True


@pytest.mark.parametrize("suffix", ["", "/members", "/state"])
async def test_unknown_and_invalid_rooms(server: TestServer, suffix: str) -> None:
    admin = await server.register("root", admin=True)
    status, body = await server.call("GET", f"{V1}/rooms/!unknown:test.example{suffix}", admin)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await server.call("GET", f"{V1}/rooms/not-a-room{suffix}", admin)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
