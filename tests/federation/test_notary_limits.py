"""What an unauthenticated caller can make us fetch (both engines): the notary
(``/_matrix/key/v2/query``) and X-Matrix requests from unknown origins are rate-limited per
client address (``rc_remote_key_fetches``), the notary takes a bounded number of names per request,
and outbound key fetches run at most ``max_concurrent_fetches`` at a time (excess waits)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from homeserver.app import Homeserver, create_app
from homeserver.config import HomeserverConfig
from homeserver.crypto.signing import generate_signing_key, get_verify_key
from homeserver.federation.client import FederationUnreachable
from homeserver.federation.keyring import Keyring
from homeserver.http.federation.auth import authenticate_request
from homeserver.http.keys.key_query import MAX_SERVERS_PER_QUERY
from homeserver.storage.keys import ServerKey
from tests.federation.test_inbound_auth import send
from tests.federation.test_keyring import Peer
from tests.harness import FIXED_NOW_MS, make_config
from tests.harness import TestServer as HarnessServer

BURST = 3
TEST_PATH = "/_matrix/federation/v1/test_auth/{room_id}"


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    # Refilling one token a day: a refused request stays refused for the whole test.
    return make_config(
        tmp_path, rc_remote_key_fetches={"per_second": 0.00001, "burst_count": BURST}
    )


class GatedRemotes:
    """Every ``*.example`` server's keys, each fetch held until the test releases it; counts the
    fetches in flight at once."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.entered = asyncio.Queue[str]()
        self.release = asyncio.Event()
        self.gated = False

    async def get_server_keys(self, destination: str) -> dict[str, Any]:
        self.calls.append(destination)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self.entered.put_nowait(destination)
            if self.gated:
                await self.release.wait()
            if destination.startswith("down"):
                raise FederationUnreachable("down")
            peer = Peer(destination)
            peer.valid_until_ts = FIXED_NOW_MS + 3600 * 1000
            return peer.document()
        finally:
            self.in_flight -= 1


def _keyring(hs: Homeserver, remotes: GatedRemotes, **kwargs: Any) -> Keyring:
    return Keyring(hs.store.keys, remotes, hs.clock, hs.server_name, hs.signing_key, **kwargs)


@pytest.fixture
async def notary(hs: Homeserver, aiohttp_client: Any) -> tuple[HarnessServer, GatedRemotes]:
    remotes = GatedRemotes()
    hs.keyring = _keyring(hs, remotes)
    return HarnessServer(hs, await aiohttp_client(create_app(hs))), remotes


def _assert_limited(status: int, body: Any) -> None:
    assert status == 429, body
    assert body["errcode"] == "M_LIMIT_EXCEEDED"
    assert isinstance(body["retry_after_ms"], int) and body["retry_after_ms"] > 0


async def test_notary_get_is_rate_limited_per_address(notary: Any) -> None:
    server, remotes = notary
    for i in range(BURST):
        status, body = await server.call("GET", f"/_matrix/key/v2/query/s{i}.example")
        assert status == 200, body
    status, body = await server.call("GET", "/_matrix/key/v2/query/one-more.example")
    _assert_limited(status, body)
    status, body = await server.call(
        "POST", "/_matrix/key/v2/query", json={"server_keys": {"again.example": {}}}
    )
    _assert_limited(status, body)
    assert len(remotes.calls) == BURST


async def test_notary_charges_one_per_remote_name(notary: Any) -> None:
    server, remotes = notary
    names = {"a.example": {}, "b.example": {}}
    status, body = await server.call("POST", "/_matrix/key/v2/query", json={"server_keys": names})
    assert status == 200, body
    # Our own keys cost nothing.
    status, body = await server.call("GET", f"/_matrix/key/v2/query/{server.hs.server_name}")
    assert status == 200, body
    status, body = await server.call("GET", "/_matrix/key/v2/query/c.example")
    assert status == 200, body
    status, body = await server.call("GET", "/_matrix/key/v2/query/d.example")
    _assert_limited(status, body)
    assert sorted(remotes.calls) == ["a.example", "b.example", "c.example"]


async def test_notary_request_larger_than_the_bucket_takes_the_whole_bucket(notary: Any) -> None:
    server, remotes = notary
    names = {f"s{i}.example": {} for i in range(BURST + 2)}
    status, body = await server.call("POST", "/_matrix/key/v2/query", json={"server_keys": names})
    assert status == 200, body
    assert len(remotes.calls) == BURST + 2
    status, body = await server.call("GET", "/_matrix/key/v2/query/later.example")
    _assert_limited(status, body)


async def test_notary_caps_names_per_request(notary: Any) -> None:
    server, remotes = notary
    names = {f"s{i}.example": {} for i in range(MAX_SERVERS_PER_QUERY + 1)}
    status, body = await server.call("POST", "/_matrix/key/v2/query", json={"server_keys": names})
    assert status == 400, body
    assert body["errcode"] == "M_INVALID_PARAM"
    assert remotes.calls == []


async def _until(condition: Callable[[], bool]) -> None:
    """Wait (yielding to the loop) until ``condition`` holds; fail if it never does."""
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.001)


async def test_concurrent_key_fetches_are_bounded_and_excess_waits(
    hs: Homeserver, aiohttp_client: Any
) -> None:
    remotes = GatedRemotes()
    remotes.gated = True
    hs.keyring = keyring = _keyring(hs, remotes, max_concurrent_fetches=2)
    server = HarnessServer(hs, await aiohttp_client(create_app(hs)))
    names = [f"s{i}.example" for i in range(5)]
    request = asyncio.ensure_future(
        server.call(
            "POST", "/_matrix/key/v2/query", json={"server_keys": {n: {} for n in names}}
        )
    )
    try:
        # Every name's fetch has been asked for; give the fetch tasks their first step.
        await _until(lambda: keyring.pending_fetches == len(names))
        await asyncio.sleep(0)
        in_flight_while_held = remotes.in_flight
    finally:
        remotes.release.set()
    status, body = await request
    assert in_flight_while_held == 2
    assert status == 200, body
    assert sorted(d["server_name"] for d in body["server_keys"]) == names
    assert sorted(remotes.calls) == names
    assert remotes.max_in_flight == 2


async def whoami(request: web.Request) -> web.Response:
    return web.json_response({"origin": await authenticate_request(request)})


async def test_x_matrix_from_unknown_origins_is_rate_limited_per_address(
    hs: Homeserver, aiohttp_client: Any
) -> None:
    remotes = GatedRemotes()
    hs.keyring = _keyring(hs, remotes)
    app = create_app(hs)
    app.router.add_route("*", TEST_PATH, whoami)
    fed = HarnessServer(hs, await aiohttp_client(app))
    path = "/_matrix/federation/v1/test_auth/r"
    for i in range(BURST):
        status, body = await send(fed, "GET", path, origin=f"down{i}.example")
        assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")
    status, body = await send(fed, "GET", path, origin="down-more.example")
    _assert_limited(status, body)
    assert len(remotes.calls) == BURST
    # An origin whose keys we hold needs no fetch and is not limited.
    peer_key = generate_signing_key("p1")
    await hs.store.keys.store_server_keys(
        [ServerKey("known.example", "ed25519:p1", bytes(get_verify_key(peer_key)), 2**62, 0)]
    )
    status, body = await send(fed, "GET", path, origin="known.example", key=peer_key)
    assert (status, body) == (200, {"origin": "known.example"})
