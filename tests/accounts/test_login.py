"""``/login``, ``/logout``, ``/logout/all``, ``/account/whoami``, ``/account/password``."""

from __future__ import annotations

from pathlib import Path

import pytest

from homeserver.config import HomeserverConfig
from tests.accounts.helpers import PASSWORD, login, open_registration_config, registered_user
from tests.harness import TestServer, TestUser


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return open_registration_config(
        tmp_path,
        rc_login={
            "address": {"per_second": 1000, "burst_count": 1000},
            "account": {"per_second": 1000, "burst_count": 1000},
            "failed_attempts": {"per_second": 0.001, "burst_count": 3},
        },
    )


async def test_login_flows(server: TestServer) -> None:
    status, body = await server.call("GET", "/login")
    assert status == 200 and body == {"flows": [{"type": "m.login.password"}]}


@pytest.mark.parametrize("name", ["alice", "@alice:test.example", "ALICE", "@Alice:test.example"])
async def test_login_by_localpart_or_user_id(server: TestServer, name: str) -> None:
    await registered_user(server, "alice")
    status, body = await login(server, name, initial_device_display_name="laptop")
    assert status == 200, body
    assert body["user_id"] == "@alice:test.example"
    assert body["home_server"] == "test.example"
    user = TestUser(body["user_id"], body["access_token"], body["device_id"])
    status, whoami = await server.call("GET", "/account/whoami", user)
    assert whoami == {"user_id": user.user_id, "device_id": user.device_id, "is_guest": False}
    status, device = await server.call("GET", f"/devices/{user.device_id}", user)
    assert status == 200 and device["display_name"] == "laptop"


async def test_legacy_user_field(server: TestServer) -> None:
    await registered_user(server, "alice")
    status, body = await server.call(
        "POST", "/login", json={"type": "m.login.password", "user": "alice", "password": PASSWORD}
    )
    assert status == 200 and body["user_id"] == "@alice:test.example"


async def test_wrong_password_and_unknown_user_look_alike(server: TestServer) -> None:
    await registered_user(server, "alice")
    wrong = await login(server, "alice", "not it")
    unknown = await login(server, "nobody", PASSWORD)
    remote = await login(server, "@alice:elsewhere.example", PASSWORD)
    for status, body in (wrong, unknown, remote):
        assert status == 403
        assert body == {"errcode": "M_FORBIDDEN", "error": "Invalid username or password"}


async def test_password_less_user_cannot_log_in(server: TestServer) -> None:
    await server.register("nopass")
    status, body = await login(server, "nopass", "")
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"


async def test_failed_attempts_are_rate_limited(server: TestServer) -> None:
    await registered_user(server, "alice")
    for _ in range(3):
        assert (await login(server, "alice", "wrong"))[0] == 403
    # The bucket is empty: even the right password waits now.
    status, body = await login(server, "alice")
    assert status == 429 and body["errcode"] == "M_LIMIT_EXCEEDED"


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"type": "m.login.token", "token": "x"}, "M_UNKNOWN"),
        ({"type": "m.login.password", "password": "x"}, "M_MISSING_PARAM"),
        ({"type": "m.login.password", "identifier": "alice", "password": "x"}, "M_INVALID_PARAM"),
        (
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.thirdparty"},
                "password": "x",
            },
            "M_UNKNOWN",
        ),
        (
            {"type": "m.login.password", "identifier": {"type": "m.id.user"}, "password": "x"},
            "M_MISSING_PARAM",
        ),
        (
            {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": 5}},
            "M_INVALID_PARAM",
        ),
        ({"type": "m.login.password", "user": "alice"}, "M_MISSING_PARAM"),
        ({"type": "m.login.password", "user": "alice", "password": 3}, "M_INVALID_PARAM"),
        (
            {"type": "m.login.password", "user": "alice", "password": "x", "device_id": 7},
            "M_INVALID_PARAM",
        ),
    ],
)
async def test_malformed_logins(server: TestServer, body: dict[str, object], errcode: str) -> None:
    status, answer = await server.call("POST", "/login", json=body)
    assert status == 400 and answer["errcode"] == errcode, answer


async def test_login_on_known_device_replaces_its_token(server: TestServer) -> None:
    first = await registered_user(server, "alice")
    status, body = await login(server, "alice", device_id=first.device_id)
    assert status == 200 and body["device_id"] == first.device_id
    assert body["access_token"] != first.access_token
    status, answer = await server.call("GET", "/account/whoami", first)
    assert status == 401 and answer["errcode"] == "M_UNKNOWN_TOKEN"
    devices = await server.hs.store.users.get_devices("@alice:test.example")
    assert [d.device_id for d in devices] == [first.device_id]


async def test_logout_ends_session_and_device(server: TestServer) -> None:
    user = await registered_user(server, "alice")
    _, other = await login(server, "alice")
    status, body = await server.call("POST", "/logout", user)
    assert status == 200 and body == {}
    status, body = await server.call("GET", "/account/whoami", user)
    assert status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN"
    devices = await server.hs.store.users.get_devices(user.user_id)
    assert [d.device_id for d in devices] == [other["device_id"]]
    status, _ = await server.call(
        "GET", "/account/whoami", headers={"Authorization": f"Bearer {other['access_token']}"}
    )
    assert status == 200


async def test_logout_all(server: TestServer) -> None:
    user = await registered_user(server, "alice")
    _, other = await login(server, "alice")
    status, _ = await server.call("POST", "/logout/all", user)
    assert status == 200
    for token in (user.access_token, other["access_token"]):
        status, _ = await server.call(
            "GET", "/account/whoami", headers={"Authorization": f"Bearer {token}"}
        )
        assert status == 401
    assert await server.hs.store.users.get_devices(user.user_id) == []


async def test_auth_required(server: TestServer) -> None:
    for method, path in (
        ("GET", "/account/whoami"),
        ("POST", "/logout"),
        ("POST", "/logout/all"),
        ("GET", "/devices"),
        ("GET", "/capabilities"),
        ("POST", "/account/password"),
    ):
        status, body = await server.call(method, path)
        assert status == 401 and body["errcode"] == "M_MISSING_TOKEN", path


async def test_change_password(server: TestServer) -> None:
    user = await registered_user(server, "alice")
    _, other = await login(server, "alice")
    status, first = await server.call("POST", "/account/password", user, json={})
    assert status == 401 and first["flows"] == [{"stages": ["m.login.password"]}]
    auth = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "alice"},
        "password": "wrong",
        "session": first["session"],
    }
    status, body = await server.call(
        "POST", "/account/password", user, json={"new_password": "new pw", "auth": auth}
    )
    assert status == 401 and body["errcode"] == "M_FORBIDDEN" and body["flows"]
    auth["password"] = PASSWORD
    status, body = await server.call(
        "POST", "/account/password", user, json={"new_password": "new pw", "auth": auth}
    )
    assert status == 200, body
    assert (await login(server, "alice", PASSWORD))[0] == 403
    assert (await login(server, "alice", "new pw"))[0] == 200
    # Other sessions ended, this one stays.
    assert (await server.call("GET", "/account/whoami", user))[0] == 200
    status, _ = await server.call(
        "GET", "/account/whoami", headers={"Authorization": f"Bearer {other['access_token']}"}
    )
    assert status == 401


async def test_change_password_keeping_devices_and_bad_input(server: TestServer) -> None:
    user = await registered_user(server, "alice")
    _, other = await login(server, "alice")
    auth = {"type": "m.login.password", "user": "alice", "password": PASSWORD}
    status, body = await server.call("POST", "/account/password", user, json={"auth": auth})
    assert status == 400 and body["errcode"] == "M_MISSING_PARAM"
    status, body = await server.call(
        "POST",
        "/account/password",
        user,
        json={"auth": auth, "new_password": "n", "logout_devices": "no"},
    )
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    status, body = await server.call(
        "POST",
        "/account/password",
        user,
        json={"auth": auth, "new_password": "n2", "logout_devices": False},
    )
    assert status == 200, body
    status, _ = await server.call(
        "GET", "/account/whoami", headers={"Authorization": f"Bearer {other['access_token']}"}
    )
    assert status == 200
