"""``/_synapse/admin/v1/register``: Synapse's shared-secret registration, HMAC computed here."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig
from homeserver.storage.users import hash_access_token
from tests.harness import TestServer, make_config

SECRET = "s3cret-for-tests"
PATH = "/_synapse/admin/v1/register"


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return make_config(tmp_path, registration_shared_secret=SECRET)


def mac_of(nonce: str, user: str, password: str, admin: bool, user_type: str | None = None) -> str:
    parts = [nonce, user, password, "admin" if admin else "notadmin"]
    if user_type is not None:
        parts.append(user_type)
    message = "\x00".join(parts).encode()
    return hmac.new(SECRET.encode(), message, hashlib.sha1).hexdigest()


async def nonce_of(server: TestServer) -> str:
    status, body = await server.call("GET", PATH)
    assert status == 200
    return str(body["nonce"])


async def post(server: TestServer, **body: Any) -> tuple[int, Any]:
    return await server.call("POST", PATH, json=body)


async def test_register_admin_user(server: TestServer) -> None:
    nonce = await nonce_of(server)
    status, body = await post(
        server,
        nonce=nonce,
        username="boss",
        password="pw",
        admin=True,
        displayname="The Boss",
        mac=mac_of(nonce, "boss", "pw", True),
    )
    assert status == 200, body
    assert body["user_id"] == "@boss:test.example" and body["home_server"] == "test.example"
    user = await server.hs.store.users.get_user("@boss:test.example")
    assert user is not None and user.admin and user.password_hash != "pw"
    owner = await server.hs.store.users.get_token_owner(hash_access_token(body["access_token"]))
    assert owner is not None and owner.device_id == body["device_id"]
    _, profile = await server.call("GET", "/profile/@boss:test.example")
    assert profile == {"displayname": "The Boss"}
    # The password works for /login.
    status, _ = await server.call(
        "POST", "/login", json={"type": "m.login.password", "user": "boss", "password": "pw"}
    )
    assert status == 200


async def test_register_with_user_type_not_admin(server: TestServer) -> None:
    nonce = await nonce_of(server)
    status, body = await post(
        server,
        nonce=nonce,
        username="helper",
        password="pw",
        admin=False,
        user_type="bot",
        mac=mac_of(nonce, "helper", "pw", False, "bot"),
    )
    assert status == 200, body
    user = await server.hs.store.users.get_user("@helper:test.example")
    assert user is not None and not user.admin


async def test_wrong_mac_and_nonce_single_use(server: TestServer) -> None:
    nonce = await nonce_of(server)
    status, body = await post(
        server,
        nonce=nonce,
        username="x",
        password="pw",
        admin=True,
        mac=mac_of(nonce, "x", "pw", False),  # says notadmin: must not match
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN" and body["error"] == "HMAC incorrect"
    # The nonce was spent by the failed attempt.
    status, body = await post(
        server,
        nonce=nonce,
        username="x",
        password="pw",
        admin=False,
        mac=mac_of(nonce, "x", "pw", False),
    )
    assert status == 400 and body["error"] == "unrecognised nonce"
    assert await server.hs.store.users.get_user("@x:test.example") is None


async def test_unknown_and_expired_nonces(server: TestServer) -> None:
    status, body = await post(
        server,
        nonce="made-up",
        username="x",
        password="pw",
        mac=mac_of("made-up", "x", "pw", False),
    )
    assert status == 400 and body["error"] == "unrecognised nonce"
    old = "old-nonce"
    now = server.hs.clock()
    await server.hs.store.ui_auth.add_nonce(old, now=now - 61_000, expired_before=0)
    status, body = await post(
        server, nonce=old, username="x", password="pw", mac=mac_of(old, "x", "pw", False)
    )
    assert status == 400 and body["error"] == "unrecognised nonce"


async def test_taken_and_invalid_usernames(server: TestServer) -> None:
    await server.register("taken")
    for username, errcode in (("taken", "M_USER_IN_USE"), ("bad name", "M_INVALID_USERNAME")):
        nonce = await nonce_of(server)
        status, body = await post(
            server,
            nonce=nonce,
            username=username,
            password="pw",
            mac=mac_of(nonce, username, "pw", False),
        )
        assert status == 400 and body["errcode"] == errcode


@pytest.mark.parametrize(
    "body",
    [
        {"username": "x", "password": "pw", "mac": "00"},
        {"nonce": "n", "password": "pw", "mac": "00"},
        {"nonce": "n", "username": "x", "mac": "00"},
        {"nonce": "n", "username": "x", "password": "pw"},
        {"nonce": "n", "username": "x", "password": "pw", "mac": "00", "admin": "yes"},
        {"nonce": "n", "username": "x", "password": 1, "mac": "00"},
        {"nonce": "n", "username": "x", "password": "pw", "mac": "00", "user_type": "alien"},
    ],
)
async def test_malformed_bodies(server: TestServer, body: dict[str, Any]) -> None:
    status, answer = await server.call("POST", PATH, json=body)
    assert status == 400 and answer["errcode"].startswith("M_"), answer


class TestWithoutSecret:
    @pytest.fixture
    def hs_config(self, tmp_path: Path) -> HomeserverConfig:
        return make_config(tmp_path)

    async def test_refused(self, server: TestServer) -> None:
        status, body = await server.call("GET", PATH)
        assert status == 400 and body["error"] == "Shared secret registration is not enabled"
        status, body = await server.call(
            "POST", PATH, json={"nonce": "n", "username": "x", "password": "p", "mac": "0"}
        )
        assert status == 400 and body["error"] == "Shared secret registration is not enabled"
