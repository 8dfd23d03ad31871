"""An in-process homeserver per database engine, with helpers to make users and call the API.

Fixtures (registered in tests/conftest.py):

* ``hs`` — a :class:`~homeserver.app.Homeserver` over the ``store`` fixture (so every test that
  uses it runs on SQLite and on PostgreSQL), server name ``test.example``, a fixed clock.
* ``server`` — a :class:`TestServer`: ``await server.register("alice")`` makes a user with an
  access token (straight through the store: no rate limits, no UIA; ``make_user`` does the same
  on any ``Homeserver``), ``await server.login_device(user, "DEV2")`` another device, and
  ``await server.call("POST", "/createRoom", user, json={...})`` returns ``(status, body)``;
  paths not starting with ``/_`` get the ``/_matrix/client/v3`` prefix. ``call_exact`` sends
  an already-encoded target unchanged (signed federation requests, hostile paths).
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from signedjson.key import generate_signing_key
from yarl import URL

from homeserver.app import Homeserver, create_app
from homeserver.config import HomeserverConfig
from homeserver.storage import Store
from homeserver.storage.users import hash_access_token

SERVER_NAME = "test.example"
#: The fixed wall clock of in-process tests (ms since the epoch); it ticks 1 ms per read so
#: events get distinct timestamps.
FIXED_NOW_MS = 1_700_000_000_000


class TickingClock:
    def __init__(self, start: int = FIXED_NOW_MS) -> None:
        self._counter = itertools.count(start)

    def __call__(self) -> int:
        return next(self._counter)


@dataclass(frozen=True, slots=True)
class TestUser:
    user_id: str
    access_token: str
    device_id: str


async def make_user(
    hs: Homeserver, localpart: str, *, admin: bool = False, device_id: str | None = None
) -> TestUser:
    """A user with one logged-in device, made straight through the store (no rate limits, no
    UIA); ``device_id`` defaults to a random one."""
    user_id = f"@{localpart}:{hs.server_name}"
    now = hs.clock()
    await hs.store.users.create_user(user_id, None, created_ts=now, admin=admin)
    return await login_device(hs, user_id, device_id or secrets.token_hex(5).upper(), now=now)


async def login_device(
    hs: Homeserver, user_id: str, device_id: str, *, now: int | None = None
) -> TestUser:
    """``user_id`` logged in on ``device_id`` (made if new) with a fresh access token."""
    await hs.store.users.upsert_device(user_id, device_id)
    token = secrets.token_urlsafe(32)
    created_ts = hs.clock() if now is None else now
    await hs.store.users.add_access_token(
        hash_access_token(token), user_id, device_id, created_ts=created_ts
    )
    return TestUser(user_id, token, device_id)


class TestServer:
    def __init__(self, hs: Homeserver, client: TestClient[Any, Any]) -> None:
        self.hs = hs
        self.client = client

    async def register(self, localpart: str, *, admin: bool = False) -> TestUser:
        return await make_user(self.hs, localpart, admin=admin)

    async def login_device(self, user: TestUser, device_id: str) -> TestUser:
        """Another logged-in device of ``user``."""
        return await login_device(self.hs, user.user_id, device_id)

    async def call(
        self,
        method: str,
        path: str,
        user: TestUser | None = None,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        if not path.startswith("/_"):
            path = "/_matrix/client/v3" + path
        all_headers = dict(headers or {})
        if user is not None:
            all_headers["Authorization"] = f"Bearer {user.access_token}"
        response = await self.client.request(
            method, path, json=json, data=data, params=params, headers=all_headers
        )
        try:
            body = await response.json(content_type=None)
        except ValueError:
            body = await response.text()
        return response.status, body

    async def call_exact(
        self,
        method: str,
        target: str,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        """Send ``target`` (path and query, already percent-encoded) byte for byte, as an
        X-Matrix signature covers it or a hostile client writes it (yarl would re-encode
        ``%21``/``%3A``/``%40`` otherwise); ``(status, body text)``."""
        base = str(self.client.make_url("/")).rstrip("/")
        response = await self.client.session.request(
            method, URL(base + target, encoded=True), data=data, headers=headers or {}
        )
        return response.status, (await response.read()).decode("utf-8", errors="replace")


def make_config(tmp_path: Path, **overrides: Any) -> HomeserverConfig:
    data: dict[str, Any] = {"server_name": SERVER_NAME, **overrides}
    return HomeserverConfig.parse(data, tmp_path)


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    """Override in a test module to change settings (e.g. rate limits)."""
    return make_config(tmp_path)


@pytest.fixture
def hs(hs_config: HomeserverConfig, store: Store) -> Homeserver:
    return Homeserver(hs_config, generate_signing_key("a_test"), store, clock=TickingClock())


@pytest.fixture
async def server(hs: Homeserver, aiohttp_client: Any) -> TestServer:
    client = await aiohttp_client(create_app(hs))
    return TestServer(hs, client)
