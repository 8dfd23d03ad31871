"""FederationClient against a real HTTPS peer on loopback (tests/federation/fake_remote.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from nacl.exceptions import BadSignatureError

from homeserver.crypto.signing import generate_signing_key, get_verify_key
from homeserver.federation.client import (
    FederationClient,
    FederationHttpError,
    FederationUnreachable,
    encode_query,
    fed_path,
)
from tests.federation.fake_remote import LOOPBACK_WHITELIST, FakeRemoteServer, ReceivedRequest
from tests.harness import make_config

OUR_NAME = "us.example"
OUR_KEY = generate_signing_key("ours")


@pytest.fixture
async def remote(tmp_path: Path) -> AsyncIterator[FakeRemoteServer]:
    async with FakeRemoteServer(tmp_path) as server:
        yield server


def make_client(tmp_path: Path, **config: Any) -> FederationClient:
    settings: dict[str, Any] = {
        "federation_verify_certificates": False,
        "ip_range_whitelist": LOOPBACK_WHITELIST,
    }
    settings.update(config)
    return FederationClient(OUR_NAME, OUR_KEY, make_config(tmp_path, **settings).federation)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[FederationClient]:
    fed = make_client(tmp_path)
    yield fed
    await fed.close()


@pytest.mark.parametrize(
    ("template", "args", "expected"),
    [
        ("/_matrix/federation/v1/send/{}", ("txn1",), "/_matrix/federation/v1/send/txn1"),
        (
            "/_matrix/federation/v1/make_join/{}/{}",
            ("!room:a.example", "@u:b.example"),
            "/_matrix/federation/v1/make_join/%21room%3Aa.example/%40u%3Ab.example",
        ),
        ("/e/{}", ("$abc/def+g=",), "/e/%24abc%2Fdef%2Bg%3D"),
        ("/e/{}", ("a b?c#d",), "/e/a%20b%3Fc%23d"),
    ],
)
def test_fed_path(template: str, args: tuple[str, ...], expected: str) -> None:
    assert fed_path(template, *args) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (None, ""),
        ({}, ""),
        ({"event_id": "$a:b"}, "event_id=%24a%3Ab"),
        ({"ver": ["1", "12"]}, "ver=1&ver=12"),
        ({"v": ["$x", "$y"], "limit": "10"}, "v=%24x&v=%24y&limit=10"),
        ({"q": "a b&c=d"}, "q=a%20b%26c%3Dd"),
    ],
)
def test_encode_query(query: Any, expected: str) -> None:
    assert encode_query(query) == expected


async def test_get_is_signed_over_the_exact_target(
    client: FederationClient, remote: FakeRemoteServer
) -> None:
    async def handler(request: ReceivedRequest) -> Any:
        return {"room": request.params["room_id"], "ids": request.query["event_id"]}

    remote.add_handler("GET", "/_matrix/federation/v1/state_ids/{room_id}", handler)
    path = fed_path("/_matrix/federation/v1/state_ids/{}", "!r:x.example")
    body = await client.get_json(remote.server_name, path, {"event_id": "$e:x.example"})
    assert body == {"room": "!r:x.example", "ids": ["$e:x.example"]}
    received = remote.received[-1]
    assert received.raw_path == (
        "/_matrix/federation/v1/state_ids/%21r%3Ax.example?event_id=%24e%3Ax.example"
    )
    # Host = the server name (explicit port), and the signature verifies over the raw target.
    assert received.headers["Host"] == remote.server_name
    origin = received.x_matrix_origin(get_verify_key(OUR_KEY), remote.server_name)
    assert origin == OUR_NAME
    assert received.headers["Authorization"].startswith(
        f'X-Matrix origin="{OUR_NAME}",destination="{remote.server_name}",key="ed25519:ours",sig="'
    )


async def test_put_and_post_sign_the_json_body(
    client: FederationClient, remote: FakeRemoteServer
) -> None:
    async def echo(request: ReceivedRequest) -> Any:
        return {"got": request.json}

    remote.add_handler("PUT", "/_matrix/federation/v1/send/{txn}", echo)
    remote.add_handler("POST", "/_matrix/federation/v1/get_missing_events/{room}", echo)
    content = {"origin": OUR_NAME, "pdus": [], "text": "é"}
    assert await client.put_json(remote.server_name, "/_matrix/federation/v1/send/t1", content) == {
        "got": content
    }
    put = remote.received[-1]
    assert put.headers["Content-Type"] == "application/json"
    put.x_matrix_origin(get_verify_key(OUR_KEY), remote.server_name)

    await client.post_json(remote.server_name, "/_matrix/federation/v1/get_missing_events/r", {})
    post = remote.received[-1]
    assert post.json == {}
    post.x_matrix_origin(get_verify_key(OUR_KEY), remote.server_name)


async def test_tampered_signature_would_not_verify(
    client: FederationClient, remote: FakeRemoteServer
) -> None:
    """The check used above can fail: a different body does not verify."""
    remote.add_handler("PUT", "/p", _answer({}))
    await client.put_json(remote.server_name, "/p", {"a": 1})
    received = remote.received[-1]
    received.body = b'{"a":2}'
    with pytest.raises(BadSignatureError):
        received.x_matrix_origin(get_verify_key(OUR_KEY), remote.server_name)


def _answer(result: Any):  # type: ignore[no-untyped-def]
    async def handler(request: ReceivedRequest) -> Any:
        return result

    return handler


@pytest.mark.parametrize(
    ("status", "body", "errcode", "error"),
    [
        (403, {"errcode": "M_FORBIDDEN", "error": "not allowed"}, "M_FORBIDDEN", "not allowed"),
        (404, {"errcode": "M_UNRECOGNIZED"}, "M_UNRECOGNIZED", None),
        (500, "oops", None, None),
        (400, [1, 2], None, None),
    ],
)
async def test_http_errors_are_mapped(
    client: FederationClient,
    remote: FakeRemoteServer,
    status: int,
    body: Any,
    errcode: str | None,
    error: str | None,
) -> None:
    if isinstance(body, str):

        async def handler(request: ReceivedRequest) -> Any:
            return web.Response(status=status, text=body)

    else:
        handler = _answer((status, body))
    remote.add_handler("GET", "/x", handler)
    with pytest.raises(FederationHttpError) as info:
        await client.get_json(remote.server_name, "/x")
    assert (info.value.status, info.value.errcode, info.value.error) == (status, errcode, error)


async def test_non_json_success_is_unreachable(
    client: FederationClient, remote: FakeRemoteServer
) -> None:
    async def handler(request: ReceivedRequest) -> Any:
        return web.Response(text="<html>")

    remote.add_handler("GET", "/x", handler)
    with pytest.raises(FederationUnreachable):
        await client.get_json(remote.server_name, "/x")


async def test_get_server_keys_is_unsigned(
    client: FederationClient, remote: FakeRemoteServer
) -> None:
    keys = await client.get_server_keys(remote.server_name)
    assert keys["server_name"] == remote.server_name
    assert "Authorization" not in remote.received[-1].headers


async def test_blocked_ip_is_never_contacted(tmp_path: Path, remote: FakeRemoteServer) -> None:
    # The default blacklist holds 127.0.0.0/8; nothing whitelists it.
    fed = make_client(tmp_path, ip_range_whitelist=[])
    try:
        with pytest.raises(FederationUnreachable):
            await fed.get_json(remote.server_name, "/x")
        with pytest.raises(FederationUnreachable):
            await fed.get_json(f"127.0.0.1:{remote.port}", "/x")
    finally:
        await fed.close()
    assert remote.received == []


async def test_explicit_blacklist_entry_beats_default_allow(
    tmp_path: Path, remote: FakeRemoteServer
) -> None:
    fed = make_client(tmp_path, ip_range_whitelist=[], ip_range_blacklist=["127.0.0.1/32"])
    try:
        with pytest.raises(FederationUnreachable):
            await fed.get_json(remote.server_name, "/x")
    finally:
        await fed.close()
    assert remote.received == []


async def test_domain_whitelist(tmp_path: Path, remote: FakeRemoteServer) -> None:
    fed = make_client(tmp_path, federation_domain_whitelist=["other.example"])
    try:
        with pytest.raises(FederationUnreachable, match="whitelist"):
            await fed.get_json(remote.server_name, "/x")
    finally:
        await fed.close()
    assert remote.received == []
    allowed = make_client(tmp_path, federation_domain_whitelist=[remote.server_name])
    try:
        remote.add_handler("GET", "/x", _answer({"ok": True}))
        assert await allowed.get_json(remote.server_name, "/x") == {"ok": True}
    finally:
        await allowed.close()


async def test_certificate_verification(tmp_path: Path, remote: FakeRemoteServer) -> None:
    fed = make_client(tmp_path, federation_verify_certificates=True)
    try:
        with pytest.raises(FederationUnreachable):
            await fed.get_json(remote.server_name, "/x")
    finally:
        await fed.close()


async def test_response_size_cap(tmp_path: Path, remote: FakeRemoteServer) -> None:
    remote.add_handler("GET", "/big", _answer({"pad": "x" * 5000}))
    remote.add_handler("GET", "/small", _answer({"pad": "x"}))
    settings = make_config(
        tmp_path, federation_verify_certificates=False, ip_range_whitelist=LOOPBACK_WHITELIST
    ).federation
    fed = FederationClient(OUR_NAME, OUR_KEY, settings, max_response_bytes=1000)
    try:
        with pytest.raises(FederationUnreachable, match="limit"):
            await fed.get_json(remote.server_name, "/big")
        assert await fed.get_json(remote.server_name, "/small") == {"pad": "x"}
    finally:
        await fed.close()


async def test_timeout(client: FederationClient, remote: FakeRemoteServer) -> None:
    release = asyncio.Event()

    async def slow(request: ReceivedRequest) -> Any:
        await release.wait()
        return {}

    remote.add_handler("GET", "/slow", slow)
    try:
        with pytest.raises(FederationUnreachable):
            await client.get_json(remote.server_name, "/slow", timeout=0.2)
    finally:
        release.set()


async def test_refused_connection(tmp_path: Path, client: FederationClient) -> None:
    server = FakeRemoteServer(tmp_path)
    await server.start()
    name = server.server_name
    await server.stop()
    with pytest.raises(FederationUnreachable):
        await client.get_json(name, "/x")


async def test_invalid_destination(client: FederationClient) -> None:
    with pytest.raises(FederationUnreachable):
        await client.get_json("not a server", "/x")


@pytest.mark.parametrize("name", ["..", "a..b", "-.", "x" * 64 + ".example"])
async def test_names_idna_cannot_encode_are_unreachable(
    client: FederationClient, name: str
) -> None:
    # The server-name grammar admits these; a URL cannot carry them. Found by the media fuzz as a
    # 500 on the streaming path; the JSON path must answer the same way.
    with pytest.raises(FederationUnreachable):
        await client.get_json(name, "/x")
