"""Shared helpers for the account tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homeserver.config import HomeserverConfig
from tests.builders import HIGH_LIMIT
from tests.harness import TestServer, TestUser, make_config

PASSWORD = "correct horse battery staple"


def open_registration_config(tmp_path: Path, **overrides: Any) -> HomeserverConfig:
    settings: dict[str, Any] = {
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "rc_registration": HIGH_LIMIT,
        "rc_login": HIGH_LIMIT,
        **overrides,
    }
    return make_config(tmp_path, **settings)


async def register(
    server: TestServer, username: str | None, password: str | None = PASSWORD, **extra: Any
) -> tuple[int, Any]:
    """Register in one request with ``m.login.dummy`` (as nio does)."""
    body: dict[str, Any] = {"auth": {"type": "m.login.dummy"}, **extra}
    if username is not None:
        body["username"] = username
    if password is not None:
        body["password"] = password
    return await server.call("POST", "/register", json=body)


async def registered_user(server: TestServer, username: str) -> TestUser:
    status, body = await register(server, username)
    assert status == 200, body
    return TestUser(body["user_id"], body["access_token"], body["device_id"])


async def login(server: TestServer, user: str, password: str = PASSWORD, **extra: Any) -> Any:
    return await server.call(
        "POST",
        "/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
            **extra,
        },
    )
