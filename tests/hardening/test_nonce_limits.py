"""Shared-secret registration nonces (``GET /_synapse/admin/v1/register``): rate-limited per
client address (an ``rc_registration``-shaped bucket of their own), expiring after 60 s and
bounded in number, so anonymous GETs cannot fill the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from signedjson.key import generate_signing_key

from homeserver.accounts import shared_secret
from homeserver.app import Homeserver, create_app
from homeserver.storage import Store
from tests.harness import TestServer as Server
from tests.harness import TickingClock, make_config

PATH = "/_synapse/admin/v1/register"


async def _server(
    tmp_path: Path, store: Store, aiohttp_client: Any, rc_registration: dict[str, float]
) -> Server:
    config = make_config(
        tmp_path, registration_shared_secret="s3cret", rc_registration=rc_registration
    )
    hs = Homeserver(config, generate_signing_key("a_test"), store, clock=TickingClock())
    return Server(hs, await aiohttp_client(create_app(hs, x_forwarded=True)))


async def _nonce(server: Server, address: str = "198.51.100.1") -> tuple[int, Any]:
    return await server.call("GET", PATH, headers={"X-Forwarded-For": address})


async def _rows(server: Server) -> int:
    return int(await server.hs.store.db.fetchval("SELECT COUNT(*) FROM registration_nonces"))


async def test_nonces_are_rate_limited_per_address(
    tmp_path: Path, store: Store, aiohttp_client: Any
) -> None:
    server = await _server(tmp_path, store, aiohttp_client, {"per_second": 0, "burst_count": 2})
    assert [(await _nonce(server))[0] for _ in range(2)] == [200, 200]
    status, body = await _nonce(server)
    assert (status, body["errcode"]) == (429, "M_LIMIT_EXCEEDED")
    assert await _rows(server) == 2
    assert (await _nonce(server, "198.51.100.2"))[0] == 200


async def test_nonces_are_bounded_and_expire(
    tmp_path: Path, store: Store, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shared_secret, "MAX_OUTSTANDING_NONCES", 3)
    high = {"per_second": 1000, "burst_count": 1000}
    server = await _server(tmp_path, store, aiohttp_client, high)
    for index in range(3):
        assert (await _nonce(server, f"198.51.100.{index}"))[0] == 200
    status, body = await _nonce(server, "198.51.100.9")
    assert (status, body["errcode"]) == (429, "M_LIMIT_EXCEEDED")
    assert body["retry_after_ms"] > 0
    assert await _rows(server) == 3
    # Expired nonces neither count nor stay: age them, and the next GET clears them.
    async with server.hs.store.db.transaction("age_nonces") as txn:
        await txn.execute("UPDATE registration_nonces SET created_ts = 0")
    assert (await _nonce(server, "198.51.100.9"))[0] == 200
    assert await _rows(server) == 1
