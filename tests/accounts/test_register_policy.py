"""Registration switched off, and the registration rate limit (per client address)."""

from __future__ import annotations

from pathlib import Path

import pytest

from homeserver.config import HomeserverConfig
from tests.accounts.helpers import register
from tests.harness import TestServer, make_config


class TestDisabled:
    @pytest.fixture
    def hs_config(self, tmp_path: Path) -> HomeserverConfig:
        return make_config(tmp_path)  # enable_registration defaults to false

    async def test_register_refused(self, server: TestServer) -> None:
        for body in ({}, {"username": "alice", "auth": {"type": "m.login.dummy"}}):
            status, answer = await server.call("POST", "/register", json=body)
            assert status == 403, answer
            assert answer == {"errcode": "M_FORBIDDEN", "error": "Registration has been disabled"}
        assert await server.hs.store.users.count_users() == 0


class TestWithoutVerificationFlag:
    @pytest.fixture
    def hs_config(self, tmp_path: Path) -> HomeserverConfig:
        return make_config(tmp_path, enable_registration=True)

    async def test_register_refused(self, server: TestServer) -> None:
        status, answer = await register(server, "alice")
        assert status == 403 and answer["errcode"] == "M_FORBIDDEN"


class TestRateLimited:
    @pytest.fixture
    def hs_config(self, tmp_path: Path) -> HomeserverConfig:
        return make_config(
            tmp_path,
            enable_registration=True,
            enable_registration_without_verification=True,
            rc_registration={"per_second": 0.001, "burst_count": 2},
        )

    async def test_429_after_the_burst(self, server: TestServer) -> None:
        # Asking for the flows costs nothing; only created accounts count.
        for _ in range(3):
            status, _ = await server.call("POST", "/register", json={})
            assert status == 401
        assert (await register(server, "u1"))[0] == 200
        assert (await register(server, "u2"))[0] == 200
        response = await server.client.post(
            "/_matrix/client/v3/register",
            json={"username": "u3", "auth": {"type": "m.login.dummy"}},
        )
        body = await response.json()
        assert response.status == 429
        assert body["errcode"] == "M_LIMIT_EXCEEDED" and body["retry_after_ms"] > 0
        assert int(response.headers["Retry-After"]) >= 1
        assert await server.hs.store.users.get_user("@u3:test.example") is None
        # Even the first step is refused while the bucket is empty.
        status, body = await server.call("POST", "/register", json={})
        assert status == 429
