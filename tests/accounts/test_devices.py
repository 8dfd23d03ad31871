"""``/devices``: list, show, rename, and delete behind a password (user-interactive auth)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig
from tests.accounts.helpers import PASSWORD, login, open_registration_config, registered_user
from tests.harness import TestServer, TestUser


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return open_registration_config(tmp_path)


def password_auth(session: str | None, user: str = "alice", password: str = PASSWORD) -> Any:
    auth: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
    }
    if session is not None:
        auth["session"] = session
    return auth


async def test_list_get_rename(server: TestServer) -> None:
    user = await registered_user(server, "alice")
    _, second = await login(server, "alice", initial_device_display_name="tablet")
    status, body = await server.call("GET", "/devices", user)
    assert status == 200
    by_id = {d["device_id"]: d for d in body["devices"]}
    assert set(by_id) == {user.device_id, second["device_id"]}
    assert by_id[second["device_id"]] == {
        "device_id": second["device_id"],
        "display_name": "tablet",
        "last_seen_ip": None,
        "last_seen_ts": None,
    }
    status, body = await server.call(
        "PUT", f"/devices/{user.device_id}", user, json={"display_name": "phone"}
    )
    assert status == 200 and body == {}
    status, body = await server.call("GET", f"/devices/{user.device_id}", user)
    assert status == 200 and body["display_name"] == "phone"


async def test_unknown_and_foreign_devices_are_404(server: TestServer) -> None:
    alice = await registered_user(server, "alice")
    bob = await registered_user(server, "bob")
    for device_id in ("NOSUCHDEVICE", bob.device_id):
        status, body = await server.call("GET", f"/devices/{device_id}", alice)
        assert status == 404 and body["errcode"] == "M_NOT_FOUND"
        status, body = await server.call(
            "PUT", f"/devices/{device_id}", alice, json={"display_name": "x"}
        )
        assert status == 404 and body["errcode"] == "M_NOT_FOUND"


@pytest.mark.parametrize(
    ("body", "errcode"),
    [({"display_name": 5}, "M_INVALID_PARAM"), ({"display_name": "x" * 101}, "M_TOO_LARGE")],
)
async def test_bad_rename(server: TestServer, body: Any, errcode: str) -> None:
    user = await registered_user(server, "alice")
    status, answer = await server.call("PUT", f"/devices/{user.device_id}", user, json=body)
    assert status == 400 and answer["errcode"] == errcode


async def test_delete_device_with_uia(server: TestServer) -> None:
    user = await registered_user(server, "alice")
    _, other = await login(server, "alice")
    path = f"/devices/{other['device_id']}"
    status, first = await server.call("DELETE", path, user)
    assert status == 401
    assert first["flows"] == [{"stages": ["m.login.password"]}] and first["session"]
    status, body = await server.call(
        "DELETE", path, user, json={"auth": password_auth(first["session"], password="no")}
    )
    assert status == 401 and body["errcode"] == "M_FORBIDDEN"
    assert body["session"] == first["session"]
    status, body = await server.call(
        "DELETE", path, user, json={"auth": password_auth(first["session"])}
    )
    assert status == 200, body
    devices = await server.hs.store.users.get_devices(user.user_id)
    assert [d.device_id for d in devices] == [user.device_id]
    status, _ = await server.call(
        "GET", "/account/whoami", headers={"Authorization": f"Bearer {other['access_token']}"}
    )
    assert status == 401
    # Deleting again is fine (idempotent), after authenticating again.
    status, _ = await server.call("DELETE", path, user, json={"auth": password_auth(None)})
    assert status == 200


async def test_someone_elses_password_does_not_count(server: TestServer) -> None:
    alice = await registered_user(server, "alice")
    await registered_user(server, "bob")
    status, body = await server.call(
        "DELETE", f"/devices/{alice.device_id}", alice, json={"auth": password_auth(None, "bob")}
    )
    assert status == 401 and body["errcode"] == "M_FORBIDDEN"
    assert await server.hs.store.users.get_device(alice.user_id, alice.device_id) is not None


async def test_session_cannot_change_operation_or_user(server: TestServer) -> None:
    alice = await registered_user(server, "alice")
    bob = await registered_user(server, "bob")
    _, first = await server.call("DELETE", f"/devices/{alice.device_id}", alice)
    # Another operation with the same session.
    status, body = await server.call(
        "POST",
        "/account/password",
        alice,
        json={"new_password": "x", "auth": password_auth(first["session"])},
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    # Another user with the same session.
    status, body = await server.call(
        "DELETE",
        f"/devices/{bob.device_id}",
        bob,
        json={"auth": password_auth(first["session"], "bob")},
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"


async def test_delete_devices_in_bulk(server: TestServer) -> None:
    user = await registered_user(server, "alice")
    ids = [(await login(server, "alice"))[1]["device_id"] for _ in range(2)]
    status, first = await server.call("POST", "/delete_devices", user, json={"devices": ids})
    assert status == 401
    status, body = await server.call(
        "POST",
        "/delete_devices",
        user,
        json={"devices": ids, "auth": password_auth(first["session"])},
    )
    assert status == 200, body
    devices = await server.hs.store.users.get_devices(user.user_id)
    assert [d.device_id for d in devices] == [user.device_id]
    status, body = await server.call("POST", "/delete_devices", user, json={"devices": "x"})
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"


async def test_password_less_user_cannot_delete(server: TestServer) -> None:
    user: TestUser = await server.register("nopass")
    status, body = await server.call(
        "DELETE", f"/devices/{user.device_id}", user, json={"auth": password_auth(None, "nopass")}
    )
    assert status == 401 and body["errcode"] == "M_FORBIDDEN"


async def test_uia_password_missing_is_missing_param(server: TestServer) -> None:
    user = await registered_user(server, "alice")
    _, other = await login(server, "alice")
    path = f"/devices/{other['device_id']}"
    _, first = await server.call("DELETE", path, user)
    auth = password_auth(first["session"])
    del auth["password"]
    status, body = await server.call("DELETE", path, user, json={"auth": auth})
    assert status == 401 and body["errcode"] == "M_MISSING_PARAM"
    auth["password"] = 5
    status, body = await server.call("DELETE", path, user, json={"auth": auth})
    assert status == 401 and body["errcode"] == "M_INVALID_PARAM"
