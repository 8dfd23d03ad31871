"""The notary endpoints ``/_matrix/key/v2/query`` (both engines)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from signedjson.key import decode_verify_key_bytes

from homeserver.app import Homeserver, create_app
from homeserver.crypto.base64 import decode_base64
from homeserver.crypto.signing import generate_signing_key, get_verify_key, key_id, verify_json
from homeserver.federation.keyring import Keyring
from tests.federation.fake_remote import FakeRemoteServer, federation_test_config, serving
from tests.federation.test_keyring import HOUR, Fetcher, Peer
from tests.harness import FIXED_NOW_MS, SERVER_NAME
from tests.harness import TestServer as HarnessServer

PEER = "peer.example"


@pytest.fixture
async def notary(hs: Homeserver, aiohttp_client: Any) -> tuple[HarnessServer, Peer, Fetcher]:
    peer = Peer(PEER)
    peer.valid_until_ts = FIXED_NOW_MS + 24 * HOUR
    fetcher = Fetcher(peer)
    hs.keyring = Keyring(hs.store.keys, fetcher, hs.clock, hs.server_name, hs.signing_key)
    return HarnessServer(hs, await aiohttp_client(create_app(hs))), peer, fetcher


def _check_signed_by(document: dict[str, Any], server: str, verify_key: Any) -> None:
    verify_json(document, server, key_id(verify_key), verify_key)


def _self_key(document: dict[str, Any]) -> Any:
    server = document["server_name"]
    kid, entry = next(iter(document["verify_keys"].items()))
    return server, decode_verify_key_bytes(kid, decode_base64(entry["key"]))


async def test_get_remote_keys_cosigned(notary: Any) -> None:
    server, peer, fetcher = notary
    status, body = await server.call("GET", f"/_matrix/key/v2/query/{PEER}")
    assert status == 200, body
    [document] = body["server_keys"]
    assert document["server_name"] == PEER
    # The origin's own signature is intact and ours is added.
    _check_signed_by(document, PEER, get_verify_key(peer.key))
    _check_signed_by(document, SERVER_NAME, get_verify_key(server.hs.signing_key))
    # Served from the keyring's copy on the next request.
    await server.call("GET", f"/_matrix/key/v2/query/{PEER}")
    assert fetcher.calls == [PEER]


async def test_minimum_valid_until_forces_refetch(notary: Any) -> None:
    server, peer, fetcher = notary
    await server.call("GET", f"/_matrix/key/v2/query/{PEER}")
    later = peer.valid_until_ts + 1
    peer.valid_until_ts += 2 * HOUR
    # The fixed test clock ticks 1 ms per read; move past the refetch interval.
    server.hs.keyring._last_fetch_ms.clear()
    status, body = await server.call(
        "GET", f"/_matrix/key/v2/query/{PEER}?minimum_valid_until_ts={later}"
    )
    assert status == 200
    assert body["server_keys"][0]["valid_until_ts"] == peer.valid_until_ts
    assert fetcher.calls == [PEER, PEER]


async def test_own_keys(notary: Any) -> None:
    server, _, fetcher = notary
    status, body = await server.call("GET", f"/_matrix/key/v2/query/{SERVER_NAME}")
    assert status == 200
    [document] = body["server_keys"]
    name, verify_key = _self_key(document)
    assert name == SERVER_NAME
    assert bytes(verify_key) == bytes(get_verify_key(server.hs.signing_key))
    _check_signed_by(document, SERVER_NAME, verify_key)
    assert fetcher.calls == []


async def test_post_several_servers(notary: Any) -> None:
    server, _, _ = notary
    status, body = await server.call(
        "POST",
        "/_matrix/key/v2/query",
        json={
            "server_keys": {
                PEER: {"ed25519:p1": {"minimum_valid_until_ts": FIXED_NOW_MS}},
                SERVER_NAME: {},
                "unreachable.example": {},
            }
        },
    )
    assert status == 200, body
    names = sorted(d["server_name"] for d in body["server_keys"])
    assert names == sorted([PEER, SERVER_NAME])


async def test_post_empty(notary: Any) -> None:
    server, _, fetcher = notary
    status, body = await server.call("POST", "/_matrix/key/v2/query", json={"server_keys": {}})
    assert (status, body) == (200, {"server_keys": []})
    assert fetcher.calls == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"server_keys": []},
        {"server_keys": {"bad name": {}}},
        {"server_keys": {PEER: []}},
        {"server_keys": {PEER: {"ed25519:a": {"minimum_valid_until_ts": "soon"}}}},
        {"server_keys": {f"s{i}.example": {} for i in range(101)}},
    ],
)
async def test_post_bad_bodies(notary: Any, body: Any) -> None:
    server, _, fetcher = notary
    status, answer = await server.call("POST", "/_matrix/key/v2/query", json=body)
    assert status == 400, answer
    assert answer["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM")
    assert fetcher.calls == []


async def test_get_bad_parameters(notary: Any) -> None:
    server, _, _ = notary
    status, body = await server.call(
        "GET", f"/_matrix/key/v2/query/{PEER}?minimum_valid_until_ts=x"
    )
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await server.call("GET", "/_matrix/key/v2/query/bad%20name")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


async def test_over_real_tls_listener(tmp_path: Path, store: Any) -> None:
    """Our TLS federation listener, queried by a remote peer whose keys we fetch over HTTPS."""
    config = federation_test_config(tmp_path)
    hs = Homeserver(config, generate_signing_key("ours"), store)
    async with serving(hs) as base_url, FakeRemoteServer(tmp_path) as remote:
        status, body = await remote.request("GET", base_url, "/_matrix/federation/v1/version")
        assert status == 200 and body["server"]["name"] == "homeserver"
        status, body = await remote.request(
            "POST", base_url, "/_matrix/key/v2/query", {"server_keys": {remote.server_name: {}}}
        )
        assert status == 200, body
        [document] = body["server_keys"]
        _check_signed_by(document, remote.server_name, remote.verify_key)
        _check_signed_by(document, config.server_name, get_verify_key(hs.signing_key))
        assert len(remote.requests_to("/_matrix/key/v2/server")) == 1
        stored = await store.keys.get_server_keys(remote.server_name)
        assert list(stored) == [remote.key_id]
