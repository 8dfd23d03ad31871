"""``POST /register`` and ``GET /register/available`` with open registration."""

from __future__ import annotations

from pathlib import Path

import pytest

from homeserver.config import HomeserverConfig
from homeserver.storage.users import hash_access_token
from tests.accounts.helpers import PASSWORD, open_registration_config, register
from tests.harness import TestServer


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return open_registration_config(tmp_path)


async def test_first_call_offers_the_dummy_flow(server: TestServer) -> None:
    status, body = await server.call("POST", "/register", json={"username": "alice"})
    assert status == 401
    assert body["flows"] == [{"stages": ["m.login.dummy"]}]
    assert body["params"] == {}
    assert isinstance(body["session"], str) and body["session"]
    assert "errcode" not in body
    # Nothing was created by asking.
    assert await server.hs.store.users.get_user("@alice:test.example") is None


async def test_register_with_session_from_first_call(server: TestServer) -> None:
    _, first = await server.call("POST", "/register", json={"username": "alice"})
    status, body = await server.call(
        "POST",
        "/register",
        json={
            "username": "alice",
            "password": PASSWORD,
            "initial_device_display_name": "phone",
            "auth": {"type": "m.login.dummy", "session": first["session"]},
        },
    )
    assert status == 200, body
    assert body["user_id"] == "@alice:test.example"
    assert body["home_server"] == "test.example"
    assert len(body["device_id"]) == 10 and body["device_id"].isupper()
    status, whoami = await server.call(
        "GET", "/account/whoami", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert status == 200
    assert whoami == {
        "user_id": "@alice:test.example",
        "device_id": body["device_id"],
        "is_guest": False,
    }
    devices = await server.hs.store.users.get_devices("@alice:test.example")
    assert [(d.device_id, d.display_name) for d in devices] == [(body["device_id"], "phone")]
    # The session is spent.
    status, again = await server.call(
        "POST",
        "/register",
        json={"username": "bob", "auth": {"type": "m.login.dummy", "session": first["session"]}},
    )
    assert status == 400 and again["errcode"] == "M_UNKNOWN"


async def test_secrets_are_stored_only_hashed(server: TestServer) -> None:
    status, body = await register(server, "alice")
    assert status == 200
    db = server.hs.store.db
    stored_hash = await db.fetchval(
        "SELECT password_hash FROM users WHERE user_id = ?", "@alice:test.example"
    )
    assert stored_hash.startswith("$argon2id$") and PASSWORD not in stored_hash
    token = body["access_token"]
    rows = await db.fetchall("SELECT token_hash FROM access_tokens")
    assert [r[0] for r in rows] == [hash_access_token(token)]
    assert all(
        token not in str(v) for r in await db.fetchall("SELECT * FROM access_tokens") for v in r
    )
    # At least 256 bits of randomness after the prefix.
    assert token.startswith("syt_") and len(token) >= 4 + 43


async def test_username_is_lowercased_and_profile_defaults_to_localpart(
    server: TestServer,
) -> None:
    status, body = await register(server, "Carol")
    assert status == 200
    assert body["user_id"] == "@carol:test.example"
    status, profile = await server.call("GET", "/profile/@carol:test.example")
    assert status == 200 and profile == {"displayname": "carol"}


async def test_taken_username_refused_before_auth(server: TestServer) -> None:
    await register(server, "alice")
    status, body = await server.call("POST", "/register", json={"username": "alice"})
    assert status == 400 and body["errcode"] == "M_USER_IN_USE"
    status, body = await register(server, "ALICE")
    assert status == 400 and body["errcode"] == "M_USER_IN_USE"


@pytest.mark.parametrize("username", ["", "al ice", "al:ice", "_bridge", "1234", "é", "a" * 300])
async def test_invalid_usernames(server: TestServer, username: str) -> None:
    status, body = await register(server, username)
    assert status == 400 and body["errcode"] == "M_INVALID_USERNAME", body


@pytest.mark.parametrize(
    ("field", "value", "errcode"),
    [
        ("username", 5, "M_INVALID_USERNAME"),
        ("password", 5, "M_INVALID_PARAM"),
        ("password", "x" * 513, "M_INVALID_PARAM"),
        ("device_id", ["x"], "M_INVALID_PARAM"),
        ("inhibit_login", "yes", "M_INVALID_PARAM"),
        ("initial_device_display_name", {}, "M_INVALID_PARAM"),
        ("auth", "dummy", "M_BAD_JSON"),
    ],
)
async def test_malformed_fields(server: TestServer, field: str, value: object, errcode: str):
    body = {"username": "alice", "auth": {"type": "m.login.dummy"}, field: value}
    status, answer = await server.call("POST", "/register", json=body)
    assert status == 400 and answer["errcode"] == errcode, answer
    assert await server.hs.store.users.count_users() == 0


async def test_bad_json_bodies(server: TestServer) -> None:
    status, body = await server.call("POST", "/register", data=b"{nope")
    assert status == 400 and body["errcode"] == "M_NOT_JSON"
    status, body = await server.call("POST", "/register", json=[1])
    assert status == 400 and body["errcode"] == "M_BAD_JSON"


async def test_unknown_stage_and_unknown_session(server: TestServer) -> None:
    status, body = await server.call(
        "POST", "/register", json={"username": "a1", "auth": {"type": "m.login.password"}}
    )
    assert status == 401 and body["errcode"] == "M_UNRECOGNIZED" and body["flows"]
    status, body = await server.call(
        "POST",
        "/register",
        json={"username": "a1", "auth": {"type": "m.login.dummy", "session": "nope"}},
    )
    assert status == 400 and body["errcode"] == "M_UNKNOWN"


async def test_no_password_no_username_inhibit_login(server: TestServer) -> None:
    status, body = await register(server, None, password=None, inhibit_login=True)
    assert status == 200, body
    assert body["user_id"].split(":")[0][1:].isdigit()
    assert "access_token" not in body and "device_id" not in body
    user = await server.hs.store.users.get_user(body["user_id"])
    assert user is not None and user.password_hash is None
    # A second generated user gets another number.
    status, second = await register(server, None, password=None)
    assert status == 200 and second["user_id"] != body["user_id"]
    assert second["access_token"]


async def test_given_device_id_is_used(server: TestServer) -> None:
    status, body = await register(server, "dave", device_id="MYDEVICE")
    assert status == 200 and body["device_id"] == "MYDEVICE"


async def test_guests_refused(server: TestServer) -> None:
    status, body = await server.call(
        "POST", "/register", json={"auth": {"type": "m.login.dummy"}}, params={"kind": "guest"}
    )
    assert status == 403 and body["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"
    status, body = await server.call("POST", "/register", json={}, params={"kind": "robot"})
    assert status == 400 and body["errcode"] == "M_UNRECOGNIZED"


async def test_r0_prefix(server: TestServer) -> None:
    status, body = await server.call(
        "POST",
        "/_matrix/client/r0/register",
        json={"auth": {"type": "m.login.dummy"}, "username": "old"},
    )
    assert status == 200 and body["user_id"] == "@old:test.example"


async def test_available(server: TestServer) -> None:
    status, body = await server.call("GET", "/register/available", params={"username": "erin"})
    assert status == 200 and body == {"available": True}
    await register(server, "erin")
    status, body = await server.call("GET", "/register/available", params={"username": "erin"})
    assert status == 400 and body["errcode"] == "M_USER_IN_USE"
    for bad in ("Erin", "_x", "42", "a b"):
        status, body = await server.call("GET", "/register/available", params={"username": bad})
        assert status == 400 and body["errcode"] == "M_INVALID_USERNAME", bad
    status, body = await server.call("GET", "/register/available")
    assert status == 400 and body["errcode"] == "M_MISSING_PARAM"
