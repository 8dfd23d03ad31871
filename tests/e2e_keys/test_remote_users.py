"""/keys/query and /keys/claim for other servers' users go through ``hs.remote_keys`` (a stub
here, implementing RemoteKeys' contract): one request per server, all servers concurrently, an
unreachable server reported in ``failures`` while the rest of the answer stands."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from typing import Any

import pytest

from homeserver.federation.client import FederationUnreachable
from tests.e2e_keys.helpers import CrossSigning, Device, upload_device
from tests.harness import TestServer as Server

GOOD = "good.example"
DOWN = "down.example"
BOB = f"@bob:{GOOD}"
BOB_DEVICE = Device(BOB, "BOBDEV")
BOB_CS = CrossSigning(BOB)


class StubRemoteKeys:
    """Answers for good.example, fails for down.example, and only answers once both servers
    have been asked (so a test hangs, and times out, if they are asked one after the other)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self._asked: set[str] = set()
        self._both_asked = asyncio.Event()

    async def _arrive(self, server: str) -> None:
        self._asked.add(server)
        if self._asked >= {GOOD, DOWN}:
            self._both_asked.set()
        await asyncio.wait_for(self._both_asked.wait(), 5)
        if server == DOWN:
            raise FederationUnreachable("connection refused")

    async def query(
        self, server: str, device_keys: Mapping[str, Collection[str]], timeout_s: float
    ) -> dict[str, Any]:
        self.calls.append(("query", server, {u: list(d) for u, d in device_keys.items()}))
        await self._arrive(server)
        return {
            "device_keys": {BOB: {"BOBDEV": BOB_DEVICE.device_keys()}},
            "master_keys": {BOB: BOB_CS.master_key()},
            "self_signing_keys": {BOB: BOB_CS.self_signing_key()},
        }

    async def claim(
        self, server: str, one_time_keys: Mapping[str, Mapping[str, str]], timeout_s: float
    ) -> dict[str, Any]:
        self.calls.append(("claim", server, {u: dict(d) for u, d in one_time_keys.items()}))
        await self._arrive(server)
        return {BOB: {"BOBDEV": {"signed_curve25519:K": BOB_DEVICE.one_time_key("K")}}}


@pytest.fixture
def stub(server: Server, monkeypatch: pytest.MonkeyPatch) -> StubRemoteKeys:
    remote = StubRemoteKeys()
    monkeypatch.setattr(server.hs.e2e_keys.remote_requests, "_remote", remote)
    return remote


async def test_query_asks_each_server_once_and_reports_failures(
    server: Server, stub: StubRemoteKeys
) -> None:
    alice = await server.register("alice")
    await upload_device(server, alice)
    body = {
        "device_keys": {alice.user_id: [], BOB: [], f"@eve:{DOWN}": ["X"], f"@zed:{GOOD}": []},
        "timeout": 2000,
    }
    status, answer = await server.call("POST", "/keys/query", alice, json=body)
    assert status == 200, answer
    assert sorted(c[1] for c in stub.calls) == [DOWN, GOOD]
    assert ("query", GOOD, {BOB: [], f"@zed:{GOOD}": []}) in stub.calls
    assert answer["failures"] == {DOWN: {"status": 503, "message": "connection refused"}}
    assert answer["device_keys"][BOB] == {"BOBDEV": BOB_DEVICE.device_keys()}
    assert alice.device_id in answer["device_keys"][alice.user_id]
    assert answer["master_keys"] == {BOB: BOB_CS.master_key()}
    assert answer["self_signing_keys"] == {BOB: BOB_CS.self_signing_key()}


async def test_claim_asks_each_server_once_and_reports_failures(
    server: Server, stub: StubRemoteKeys
) -> None:
    alice = await server.register("alice")
    body = {
        "one_time_keys": {
            BOB: {"BOBDEV": "signed_curve25519"},
            f"@eve:{DOWN}": {"X": "signed_curve25519"},
        }
    }
    status, answer = await server.call("POST", "/keys/claim", alice, json=body)
    assert status == 200, answer
    assert ("claim", GOOD, {BOB: {"BOBDEV": "signed_curve25519"}}) in stub.calls
    assert answer["failures"] == {DOWN: {"status": 503, "message": "connection refused"}}
    assert list(answer["one_time_keys"][BOB]["BOBDEV"]) == ["signed_curve25519:K"]


async def test_without_federation_remote_users_are_failures(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server.hs.e2e_keys.remote_requests, "_remote", None)
    alice = await server.register("alice")
    status, answer = await server.call(
        "POST", "/keys/query", alice, json={"device_keys": {BOB: []}}
    )
    assert status == 200
    assert answer["failures"][GOOD]["status"] == 503
    assert answer["device_keys"] == {}


class MasterKeyServer:
    """A remote server that answers key queries with Bob's cross-signing keys."""

    def __init__(self) -> None:
        self.queries: list[tuple[str, Any]] = []

    async def query(
        self, server: str, device_keys: Mapping[str, Collection[str]], timeout_s: float
    ) -> dict[str, Any]:
        self.queries.append((server, dict(device_keys)))
        if server != GOOD:
            raise FederationUnreachable("no route")
        return {"device_keys": {}, "master_keys": {BOB: BOB_CS.master_key()}}

    async def claim(self, *args: Any) -> dict[str, Any]:
        raise AssertionError("not used")


async def test_signing_a_remote_users_master_key(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from signedjson.sign import sign_json

    remote = MasterKeyServer()
    monkeypatch.setattr(server.hs.e2e_keys.remote_requests, "_remote", remote)
    alice = await server.register("alice")
    alice_cs = CrossSigning(alice.user_id)
    status, _ = await server.call(
        "POST", "/keys/device_signing/upload", alice, json=alice_cs.upload_body()
    )
    assert status == 200
    signed = sign_json(BOB_CS.master_key(), alice.user_id, alice_cs.user_signing)
    eve_cs = CrossSigning(f"@eve:{DOWN}")
    eve_signed = sign_json(eve_cs.master_key(), alice.user_id, alice_cs.user_signing)
    body = {
        BOB: {BOB_CS.master.version: signed},
        f"@eve:{DOWN}": {eve_cs.master.version: eve_signed},
    }
    status, answer = await server.call("POST", "/keys/signatures/upload", alice, json=body)
    assert status == 200, answer
    # Bob's master key came from his server; Eve's server is down, so hers is unknown.
    assert list(answer["failures"]) == [f"@eve:{DOWN}"]
    assert answer["failures"][f"@eve:{DOWN}"][eve_cs.master.version]["status"] == 404
    status, answer = await server.call(
        "POST", "/keys/query", alice, json={"device_keys": {BOB: []}}
    )
    usk_id = f"ed25519:{alice_cs.user_signing.version}"
    assert answer["master_keys"][BOB]["signatures"][alice.user_id] == {
        usk_id: signed["signatures"][alice.user_id][usk_id]
    }
