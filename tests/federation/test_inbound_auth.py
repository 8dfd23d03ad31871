"""Inbound X-Matrix authentication, /version, and unknown federation paths (both engines)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from homeserver.app import Homeserver, create_app
from homeserver.crypto.canonical_json import encode_canonical_json
from homeserver.crypto.signing import generate_signing_key, get_verify_key
from homeserver.federation.client import FederationUnreachable
from homeserver.federation.keyring import Keyring
from homeserver.federation.xmatrix import authorization_header
from homeserver.http.federation.auth import authenticate_request
from homeserver.storage.keys import ServerKey
from tests.harness import FIXED_NOW_MS, SERVER_NAME, make_config
from tests.harness import TestServer as HarnessServer

PEER = "peer.example"
PEER_KEY = generate_signing_key("p1")
TEST_PATH = "/_matrix/federation/v1/test_auth/{room_id}"


class Unreachable:
    async def get_server_keys(self, destination: str) -> dict[str, Any]:
        raise FederationUnreachable("no network in this test")


async def whoami(request: web.Request) -> web.Response:
    origin = await authenticate_request(request)
    return web.json_response({"origin": origin, "room_id": request.match_info["room_id"]})


@pytest.fixture
async def fed(hs: Homeserver, aiohttp_client: Any) -> HarnessServer:
    hs.keyring = Keyring(hs.store.keys, Unreachable(), hs.clock, hs.server_name, hs.signing_key)
    await hs.store.keys.store_server_keys(
        [ServerKey(PEER, "ed25519:p1", bytes(get_verify_key(PEER_KEY)), 2**62, FIXED_NOW_MS)]
    )
    app = create_app(hs)
    app.router.add_route("*", TEST_PATH, whoami)
    return HarnessServer(hs, await aiohttp_client(app))


async def send(
    fed: HarnessServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    signed_path: str | None = None,
    destination: str = SERVER_NAME,
    origin: str = PEER,
    key: Any = PEER_KEY,
    signed_body: Any = "same",
    header: str | None = None,
) -> tuple[int, Any]:
    if header is None:
        header = authorization_header(
            key,
            method,
            signed_path or path,
            origin,
            destination,
            body if signed_body == "same" else signed_body,
        )
    data = encode_canonical_json(body) if body is not None else None
    status, text = await fed.call_exact(
        method,
        path,
        data=data,
        headers={"Authorization": header, "Content-Type": "application/json"},
    )
    return status, json.loads(text)


ROOM_PATH = "/_matrix/federation/v1/test_auth/%21room%3Apeer.example?event_id=%24e%3Ax&v=1&v=2"


async def test_good_signature_over_raw_target(fed: HarnessServer) -> None:
    status, body = await send(fed, "GET", ROOM_PATH)
    assert (status, body) == (200, {"origin": PEER, "room_id": "!room:peer.example"})
    status, body = await send(fed, "PUT", ROOM_PATH, {"pdus": [], "x": "é"})
    assert status == 200, body


async def test_signature_over_decoded_path_is_refused(fed: HarnessServer) -> None:
    decoded = "/_matrix/federation/v1/test_auth/!room:peer.example?event_id=$e:x&v=1&v=2"
    status, body = await send(fed, "GET", ROOM_PATH, signed_path=decoded)
    assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"key": generate_signing_key("p1")}, 401),  # wrong key, same ID
        ({"signed_body": {"pdus": ["other"]}}, 401),  # body changed after signing
        ({"signed_path": "/_matrix/federation/v1/test_auth/x"}, 401),
        ({"destination": "someone.else"}, 401),
        ({"origin": "stranger.example"}, 401),  # unknown server, keys unreachable
        ({"header": 'X-Matrix origin="peer.example",key="ed25519:p1"'}, 400),
        ({"header": 'X-Matrix origin="peer.example" key="ed25519:p1",sig="x"'}, 400),
        ({"header": "Bearer abc"}, 401),
    ],
    ids=[
        "wrong-key",
        "body-tampered",
        "path-tampered",
        "wrong-destination",
        "unknown-origin",
        "missing-sig",
        "malformed",
        "not-x-matrix",
    ],
)
async def test_refused(fed: HarnessServer, change: dict[str, Any], status: int) -> None:
    got, body = await send(fed, "PUT", ROOM_PATH, {"pdus": []}, **change)
    assert got == status, body
    assert body["errcode"] == "M_UNAUTHORIZED"


async def test_missing_header(fed: HarnessServer) -> None:
    status, body = await fed.call("GET", "/_matrix/federation/v1/test_auth/x")
    assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")


async def test_header_without_destination_is_accepted(fed: HarnessServer) -> None:
    header = authorization_header(PEER_KEY, "GET", ROOM_PATH, PEER, SERVER_NAME)
    sig = header.rsplit('sig="', 1)[1].rstrip('"')
    legacy = f'X-Matrix origin={PEER},key="ed25519:p1",sig="{sig}"'
    status, body = await send(fed, "GET", ROOM_PATH, header=legacy)
    assert status == 200, body
    # ...but its signature must still cover our name as the destination.
    other = authorization_header(PEER_KEY, "GET", ROOM_PATH, PEER, "someone.else")
    sig = other.rsplit('sig="', 1)[1].rstrip('"')
    legacy = f'X-Matrix origin={PEER},key="ed25519:p1",sig="{sig}"'
    status, _ = await send(fed, "GET", ROOM_PATH, header=legacy)
    assert status == 401


async def test_expired_key_is_refused(fed: HarnessServer) -> None:
    old_key = generate_signing_key("old")
    await fed.hs.store.keys.store_server_keys(
        [ServerKey(PEER, "ed25519:old", bytes(get_verify_key(old_key)), 1000, 1000)]
    )
    status, body = await send(fed, "GET", ROOM_PATH, key=old_key)
    assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")


async def test_domain_whitelist_refuses_origin(
    tmp_path: Path, store: Any, aiohttp_client: Any
) -> None:
    config = make_config(tmp_path, federation_domain_whitelist=["friend.example"])
    hs = Homeserver(config, generate_signing_key("a"), store)
    hs.keyring = Keyring(store.keys, Unreachable(), hs.clock, hs.server_name, hs.signing_key)
    app = create_app(hs)
    app.router.add_route("*", TEST_PATH, whoami)
    server = HarnessServer(hs, await aiohttp_client(app))
    status, body = await send(server, "GET", ROOM_PATH)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


async def test_version(fed: HarnessServer) -> None:
    status, body = await fed.call("GET", "/_matrix/federation/v1/version")
    assert status == 200
    assert body["server"]["name"] == "homeserver" and body["server"]["version"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("PUT", "/_matrix/federation/v1/3pid/onbind", 404),
        ("GET", "/_matrix/federation/v1/timestamp_to_event/%21r%3Ax", 404),
        ("PUT", "/_matrix/federation/v1/openid/userinfo", 404),
        ("POST", "/_matrix/federation/v1/version", 405),
    ],
)
async def test_unknown_paths(fed: HarnessServer, method: str, path: str, status: int) -> None:
    got, body = await fed.call(method, path)
    assert (got, body["errcode"]) == (status, "M_UNRECOGNIZED")
