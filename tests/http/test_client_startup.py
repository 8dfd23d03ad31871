"""What a client asks for at start-up besides /sync: /voip/turnServer (Synapse's answers: {}
without TURN, HMAC-SHA1 credentials with a shared secret, fixed ones otherwise),
/.well-known/matrix/client and /server, and /versions listing only what is served (both
engines)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any

from aiohttp import web
from signedjson.key import generate_signing_key

from homeserver.app import Homeserver, create_app
from homeserver.config import ConfigError
from homeserver.http.client import versions as versions_http
from homeserver.storage import Store
from tests.harness import FIXED_NOW_MS, TestServer, make_config, make_user

TURN_URIS = ["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349"]


async def start(tmp_path: Path, store: Store, aiohttp_client: Any, **config: Any) -> TestServer:
    hs = Homeserver(
        make_config(tmp_path, **config),
        generate_signing_key("a_test"),
        store,
        clock=lambda: FIXED_NOW_MS,
    )
    return TestServer(hs, await aiohttp_client(create_app(hs)))


async def test_turn_server(tmp_path: Path, store: Store, aiohttp_client: Any) -> None:
    # No TURN configured: {} (clients then call without relays), as Synapse.
    plain = await start(tmp_path, store, aiohttp_client)
    alice = await make_user(plain.hs, "alice")
    assert await plain.call("GET", "/voip/turnServer", alice) == (200, {})
    status, answer = await plain.call("GET", "/voip/turnServer")
    assert (status, answer["errcode"]) == (401, "M_MISSING_TOKEN")

    # A shared secret: "<expiry>:<user>" and its HMAC-SHA1, base64 with padding (coturn).
    secret = "s3cret"
    shared = await start(
        tmp_path,
        store,
        aiohttp_client,
        turn_uris=TURN_URIS,
        turn_shared_secret=secret,
        turn_user_lifetime="2h",
    )
    status, answer = await shared.call("GET", "/voip/turnServer", alice)
    assert status == 200
    expiry = (FIXED_NOW_MS + 7_200_000) // 1000
    assert answer["username"] == f"{expiry}:{alice.user_id}"
    mac = hmac.new(secret.encode(), answer["username"].encode(), hashlib.sha1).digest()
    assert answer["password"] == base64.b64encode(mac).decode()
    assert (answer["ttl"], answer["uris"]) == (7200, TURN_URIS)
    # r0 clients reach it too.
    status, _ = await shared.call("GET", "/_matrix/client/r0/voip/turnServer", alice)
    assert status == 200

    # Fixed credentials; URIs without any credentials give {}.
    fixed = await start(
        tmp_path,
        store,
        aiohttp_client,
        turn_uris=TURN_URIS,
        turn_username="u",
        turn_password="p",
    )
    status, answer = await fixed.call("GET", "/voip/turnServer", alice)
    assert answer == {"username": "u", "password": "p", "ttl": 3600, "uris": TURN_URIS}
    no_credentials = await start(tmp_path, store, aiohttp_client, turn_uris=TURN_URIS)
    assert await no_credentials.call("GET", "/voip/turnServer", alice) == (200, {})


def test_turn_config_is_validated(tmp_path: Path) -> None:
    for bad in (
        {"turn_uris": "turn:one"},
        {"turn_uris": [1]},
        {"turn_user_lifetime": "soon"},
        {"turn_shared_secret": "a", "turn_shared_secret_path": "secret"},
    ):
        try:
            make_config(tmp_path, **bad)
        except ConfigError:
            continue
        raise AssertionError(f"accepted {bad}")
    (tmp_path / "turn_secret").write_text("from-file\n")
    config = make_config(tmp_path, turn_shared_secret_path="turn_secret", turn_user_lifetime=1500)
    assert config.voip.turn_shared_secret == "from-file"
    assert config.voip.turn_user_lifetime_ms == 1500  # a bare number is ms, as in Synapse
    assert "from-file" not in repr(config)


async def test_well_known(tmp_path: Path, store: Store, aiohttp_client: Any) -> None:
    plain = await start(tmp_path, store, aiohttp_client)
    for path in ("/.well-known/matrix/client", "/.well-known/matrix/server"):
        response = await plain.client.get(path)
        assert response.status == 404, path
        assert (await response.json())["errcode"] == "M_NOT_FOUND"

    configured = await start(
        tmp_path,
        store,
        aiohttp_client,
        public_baseurl="https://matrix.test.example",
        serve_server_wellknown=True,
    )
    response = await configured.client.get("/.well-known/matrix/client")
    assert response.status == 200
    assert await response.json() == {"m.homeserver": {"base_url": "https://matrix.test.example/"}}
    assert response.headers["Access-Control-Allow-Origin"] == "*"  # web clients read it
    response = await configured.client.get("/.well-known/matrix/server")
    assert await response.json() == {"m.server": "test.example:443"}


def test_server_well_known_keeps_an_explicit_port(tmp_path: Path) -> None:
    from homeserver.http.well_known import server_well_known

    for name, delegated in (
        ("example.org:8448", "example.org:8448"),
        ("[::1]", "[::1]:443"),
        ("[::1]:8448", "[::1]:8448"),
    ):
        config = make_config(tmp_path, server_name=name, serve_server_wellknown=True)
        assert server_well_known(config) == {"m.server": delegated}


def test_versions_follow_the_routes_served() -> None:
    router = web.UrlDispatcher()
    versions_http.add_routes(router)
    served = versions_http.served_routes(router)
    listed = versions_http.advertised_versions(served)
    # Nothing a client switches to on v1.4 (threads) or v1.11 (authenticated media) is served
    # by this bare router, so neither is listed; the rest are, r0 included.
    assert "v1.4" not in listed and "v1.11" not in listed
    assert {"r0.6.1", "v1.1", "v1.3", "v1.12"} <= set(listed)

    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    router.add_get("/_matrix/client/v1/media/config", handler)
    router.add_get("/_matrix/client/v1/media/download/{server_name}/{media_id}", handler)
    assert "v1.11" not in versions_http.advertised_versions(versions_http.served_routes(router))
    router.add_get("/_matrix/client/v1/media/thumbnail/{server}/{media:.+}", handler)
    assert "v1.11" in versions_http.advertised_versions(versions_http.served_routes(router))


async def test_versions_endpoint(tmp_path: Path, store: Store, aiohttp_client: Any) -> None:
    server = await start(
        tmp_path, store, aiohttp_client, encryption_enabled_by_default_for_room_type="invite"
    )
    status, body = await server.call("GET", "/_matrix/client/versions")
    assert status == 200
    served = versions_http.served_routes(server.client.app.router)
    assert body["versions"] == versions_http.advertised_versions(served)
    # Every route a listed version stands for is served by this very app.
    for version in body["versions"]:
        for route in versions_http.VERSION_REQUIRES.get(version, ()):
            assert route in served
    assert body["unstable_features"] == {
        "org.matrix.e2e_cross_signing": True,
        "org.matrix.msc2285.stable": True,
        "io.element.e2ee_forced.public": False,
        "io.element.e2ee_forced.private": True,
        "io.element.e2ee_forced.trusted_private": True,
    }
