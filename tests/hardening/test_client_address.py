"""Which address a request comes from: the peer, or behind a trusted proxy (``x_forwarded``)
the last ``X-Forwarded-For`` entry, the one the proxy itself appended."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from signedjson.key import generate_signing_key

from homeserver.app import Homeserver, create_app
from homeserver.config import HomeserverConfig
from homeserver.http.client_address import address_from
from homeserver.storage import Store
from tests.accounts.helpers import PASSWORD, registered_user
from tests.builders import HIGH_LIMIT
from tests.harness import TestServer as Server
from tests.harness import TickingClock, make_config


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("10.0.0.1", [], True, "10.0.0.1"),
        ("10.0.0.1", ["203.0.113.7"], False, "10.0.0.1"),
        ("10.0.0.1", ["203.0.113.7"], True, "203.0.113.7"),
        # A client may send its own X-Forwarded-For; only the proxy's last hop counts.
        ("10.0.0.1", ["1.2.3.4, 203.0.113.7"], True, "203.0.113.7"),
        ("10.0.0.1", ["1.2.3.4", "203.0.113.7"], True, "203.0.113.7"),
        ("10.0.0.1", ["1.2.3.4,203.0.113.7 "], True, "203.0.113.7"),
        ("10.0.0.1", ["2001:db8::1"], True, "2001:db8::1"),
        ("10.0.0.1", ["2001:DB8:0::1"], True, "2001:db8::1"),
        # Malformed: fall back to the peer.
        ("10.0.0.1", ["not-an-ip"], True, "10.0.0.1"),
        ("10.0.0.1", [""], True, "10.0.0.1"),
        ("10.0.0.1", ["1.2.3.4, "], True, "10.0.0.1"),
        ("10.0.0.1", ["1.2.3.4:5678"], True, "10.0.0.1"),
        ("10.0.0.1", ["x" * 5000], True, "10.0.0.1"),
        (None, [], True, "unknown"),
        (None, ["203.0.113.7"], False, "unknown"),
    ],
)
def test_address_from(
    peer: str | None, forwarded: list[str], trusted: bool, expected: str
) -> None:
    assert address_from(peer, forwarded, trusted=trusted) == expected


def _config(tmp_path: Path) -> HomeserverConfig:
    return make_config(
        tmp_path,
        enable_registration=True,
        enable_registration_without_verification=True,
        rc_registration=HIGH_LIMIT,
        rc_login={
            "address": {"per_second": 0.001, "burst_count": 2},
            "account": HIGH_LIMIT,
            "failed_attempts": HIGH_LIMIT,
        },
    )


async def _server(
    tmp_path: Path, store: Store, aiohttp_client: Any, *, x_forwarded: bool
) -> Server:
    hs = Homeserver(_config(tmp_path), generate_signing_key("a_test"), store, clock=TickingClock())
    client = await aiohttp_client(create_app(hs, x_forwarded=x_forwarded))
    return Server(hs, client)


async def _login(server: Server, forwarded_for: str) -> int:
    status, _ = await server.call(
        "POST",
        "/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "alice"},
            "password": PASSWORD,
        },
        headers={"X-Forwarded-For": forwarded_for},
    )
    return status


async def test_clients_behind_one_proxy_have_their_own_login_buckets(
    tmp_path: Path, store: Store, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="homeserver.access")
    server = await _server(tmp_path, store, aiohttp_client, x_forwarded=True)
    await registered_user(server, "alice")
    assert [await _login(server, "198.51.100.1") for _ in range(3)] == [200, 200, 429]
    # Another client of the same proxy is not locked out by the first one.
    assert await _login(server, "198.51.100.2") == 200
    # A client cannot pick its bucket by sending its own X-Forwarded-For first.
    assert await _login(server, "198.51.100.2, 198.51.100.1") == 429
    access = [r.getMessage() for r in caplog.records if r.name == "homeserver.access"]
    assert any(line.startswith("198.51.100.2 - ") and "/login" in line for line in access)


async def test_without_x_forwarded_the_header_is_ignored(
    tmp_path: Path, store: Store, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="homeserver.access")
    server = await _server(tmp_path, store, aiohttp_client, x_forwarded=False)
    await registered_user(server, "alice")
    assert [await _login(server, "198.51.100.1") for _ in range(3)] == [200, 200, 429]
    assert await _login(server, "198.51.100.2") == 429
    access = [r.getMessage() for r in caplog.records if r.name == "homeserver.access"]
    assert not any("198.51.100" in line for line in access)
    assert any(line.startswith("127.0.0.1 - ") for line in access)
