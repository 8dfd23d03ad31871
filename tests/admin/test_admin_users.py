"""Users v2 list / get / create-or-modify, deactivation and whois."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig
from tests.admin.helpers import V1, V2, join
from tests.builders import create_room, generous_config
from tests.harness import TestServer, TestUser

PASSWORD = "a long enough password"


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def _login(server: TestServer, user: str, password: str = PASSWORD) -> tuple[int, Any]:
    return await server.call(
        "POST",
        "/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        },
    )


async def _put(server: TestServer, caller: TestUser, user_id: str, **body: Any) -> tuple[int, Any]:
    return await server.call("PUT", f"{V2}/users/{user_id}", caller, json=body)


async def test_create_then_modify(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    status, user = await _put(
        server,
        admin,
        "@dave:test.example",
        password=PASSWORD,
        displayname="Dave",
        avatar_url="mxc://test.example/dave",
    )
    assert status == 201, user
    assert user["name"] == "@dave:test.example"
    assert user["displayname"] == "Dave" and user["avatar_url"] == "mxc://test.example/dave"
    assert user["admin"] is False and user["deactivated"] is False and user["erased"] is False
    assert {"creation_ts", "is_guest", "user_type", "threepids", "external_ids"} <= set(user)
    status, login = await _login(server, "dave")
    assert status == 200, login

    status, user = await _put(server, admin, "@dave:test.example", admin=True, displayname="D")
    assert status == 200, user
    assert user["admin"] is True and user["displayname"] == "D"
    status, got = await server.call("GET", f"{V2}/users/@dave:test.example", admin)
    assert status == 200 and got == user

    # A new password logs the user out everywhere (logout_devices defaults to true).
    dave = TestUser(login["user_id"], login["access_token"], login["device_id"])
    status, _ = await _put(server, admin, dave.user_id, password="another password entirely")
    assert status == 200
    status, _ = await server.call("GET", "/account/whoami", dave)
    assert status == 401
    status, _ = await _login(server, "dave")
    assert status == 403
    status, _ = await _login(server, "dave", "another password entirely")
    assert status == 200


async def test_create_without_password_and_bad_names(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    status, user = await _put(server, admin, "@nopass:test.example")
    assert status == 201 and user["displayname"] == "nopass"
    status, body = await _put(server, admin, "@Caps:test.example")
    assert status == 400 and body["errcode"] == "M_INVALID_USERNAME", body
    status, body = await _put(server, admin, "@far:elsewhere.example")
    assert status == 400, body
    status, body = await _put(server, admin, "@x:test.example", admin="yes")
    assert status == 400 and body["errcode"] == "M_BAD_JSON", body
    status, body = await _put(server, admin, "@x:test.example", password=5)
    assert status == 400, body
    assert await server.hs.store.users.get_user("@x:test.example") is None


async def test_an_admin_may_not_demote_themselves(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    status, body = await _put(server, admin, admin.user_id, admin=False)
    assert status == 400 and body["error"] == "You may not demote yourself.", body
    record = await server.hs.store.users.get_user(admin.user_id)
    assert record is not None and record.admin


async def test_get_unknown_and_remote_users(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    status, body = await server.call("GET", f"{V2}/users/@ghost:test.example", admin)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await server.call("GET", f"{V2}/users/@far:elsewhere.example", admin)
    assert status == 400
    status, body = await server.call("POST", f"{V1}/deactivate/@ghost:test.example", admin)
    assert status == 404


async def _users(server: TestServer, admin: TestUser, **params: str) -> dict[str, Any]:
    status, body = await server.call("GET", f"{V2}/users", admin, params=params)
    assert status == 200, body
    return dict(body)


async def test_list_filters_orders_and_pages(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    for name, display in (("anna", "Zed"), ("bert", "Yolanda"), ("cleo", None)):
        status, _ = await _put(server, admin, f"@{name}:test.example", displayname=display)
        assert status == 201
    status, _ = await server.call("POST", f"{V1}/deactivate/@bert:test.example", admin, json={})
    assert status == 200

    body = await _users(server, admin)
    assert [u["name"] for u in body["users"]] == [
        "@anna:test.example",
        "@cleo:test.example",
        "@root:test.example",
    ]
    assert body["total"] == 3 and "next_token" not in body
    assert set(body["users"][0]) == {
        "name",
        "user_type",
        "is_guest",
        "admin",
        "deactivated",
        "shadow_banned",
        "displayname",
        "avatar_url",
        "creation_ts",
        "erased",
        "last_seen_ts",
        "locked",
    }
    body = await _users(server, admin, deactivated="true")
    assert body["total"] == 4
    body = await _users(server, admin, deactivated="true", limit="2")
    assert len(body["users"]) == 2 and body["next_token"] == "2"
    rest = await _users(server, admin, deactivated="true", limit="2", **{"from": "2"})
    assert "next_token" not in rest
    names = [u["name"] for u in body["users"] + rest["users"]]
    assert names == sorted(names) and len(set(names)) == 4
    body = await _users(server, admin, order_by="name", dir="b")
    assert body["users"][0]["name"] == "@root:test.example"
    body = await _users(server, admin, order_by="displayname", deactivated="true")
    # By display name, the users without one last: Yolanda (bert), Zed (anna), cleo, root.
    assert [u["name"] for u in body["users"]][:2] == ["@bert:test.example", "@anna:test.example"]
    body = await _users(server, admin, name="zed")  # matches the display name
    assert [u["name"] for u in body["users"]] == ["@anna:test.example"]
    body = await _users(server, admin, name="cle")  # matches the localpart
    assert [u["name"] for u in body["users"]] == ["@cleo:test.example"]
    body = await _users(server, admin, user_id="root:test")
    assert [u["name"] for u in body["users"]] == ["@root:test.example"]
    body = await _users(server, admin, admins="true")
    assert [u["name"] for u in body["users"]] == ["@root:test.example"]
    body = await _users(server, admin, name="%")  # LIKE wildcards are literal
    assert body["users"] == []


@pytest.mark.parametrize(
    "params", [{"order_by": "size"}, {"limit": "-1"}, {"deactivated": "1"}, {"dir": "up"}]
)
async def test_list_bad_parameters(server: TestServer, params: dict[str, str]) -> None:
    admin = await server.register("root", admin=True)
    status, body = await server.call("GET", f"{V2}/users", admin, params=params)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM", body


async def test_deactivation_effects(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    status, _ = await _put(server, admin, "@eve:test.example", password=PASSWORD, displayname="Eve")
    assert status == 201
    status, login = await _login(server, "eve")
    eve = TestUser(login["user_id"], login["access_token"], login["device_id"])
    alice = await server.register("alice")
    room = await create_room(server, alice, name="club", preset="public_chat")
    await join(server, eve, room)
    invited = await create_room(server, alice, name="private")
    status, _ = await server.call(
        "POST", f"/rooms/{invited}/invite", alice, json={"user_id": eve.user_id}
    )
    assert status == 200

    status, body = await server.call(
        "POST", f"{V1}/deactivate/{eve.user_id}", admin, json={"erase": True}
    )
    assert status == 200 and body == {"id_server_unbind_result": "success"}

    # Logged out, devices gone, no login possible.
    status, body = await server.call("GET", "/account/whoami", eve)
    assert status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN"
    assert await server.hs.store.users.get_devices(eve.user_id) == []
    status, _ = await _login(server, "eve")
    assert status == 403
    # Left the room, rejected the invite — through membership events others see.
    for room_id in (room, invited):
        event = await server.hs.store.state.get_current_state_event(
            room_id, "m.room.member", eve.user_id
        )
        assert event is not None and event.membership == "leave", room_id
        assert event.sender == eve.user_id
    status, members = await server.call("GET", f"{V1}/rooms/{room}/members", admin)
    assert members["members"] == [alice.user_id]
    # Erased: profile cleared, and shown as such.
    status, user = await server.call("GET", f"{V2}/users/{eve.user_id}", admin)
    assert user["deactivated"] is True and user["erased"] is True
    assert user["displayname"] is None and user["avatar_url"] is None
    # Re-activation through PUT, with a new password: login works again.
    status, user = await _put(
        server, admin, eve.user_id, deactivated=False, password="a fresh password here"
    )
    assert status == 200 and user["deactivated"] is False and user["erased"] is False
    status, _ = await _login(server, "eve", "a fresh password here")
    assert status == 200


async def test_deactivate_through_put_and_bad_erase(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    frank = await server.register("frank")
    status, body = await server.call(
        "POST", f"{V1}/deactivate/{frank.user_id}", admin, json={"erase": "yes"}
    )
    assert status == 400 and body["errcode"] == "M_BAD_JSON"
    status, user = await _put(server, admin, frank.user_id, deactivated=True)
    assert status == 200 and user["deactivated"] is True and user["erased"] is False
    status, _ = await server.call("GET", "/account/whoami", frank)
    assert status == 401


async def test_whois(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    await _put(server, admin, "@gina:test.example", password=PASSWORD)
    for _ in range(2):
        status, _ = await _login(server, "gina")
        assert status == 200
    status, body = await server.call("GET", f"{V1}/whois/@gina:test.example", admin)
    assert status == 200 and body["user_id"] == "@gina:test.example"
    assert len(body["devices"]) == 2
    for device in body["devices"].values():
        (session,) = device["sessions"]
        assert session["connections"] == [{"ip": None, "last_seen": None, "user_agent": None}]
    status, body = await server.call("GET", f"{V1}/whois/@far:elsewhere.example", admin)
    assert status == 400
