"""/health, /versions, the key server, and the JSON errors every route shares."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json

from homeserver.app import Homeserver, create_app
from homeserver.crypto.base64 import decode_base64
from homeserver.errors import Forbidden
from homeserver.http.client import versions as versions_http
from tests.http.conftest import FIXED_NOW_MS, ClientFactory

UNRECOGNIZED = {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}


async def test_health(client: TestClient[Any, Any]) -> None:
    response = await client.get("/health")
    assert response.status == 200
    assert response.content_type == "text/plain"
    assert await response.text() == "OK"


async def test_versions(client: TestClient[Any, Any]) -> None:
    response = await client.get("/_matrix/client/versions")
    assert response.status == 200
    body = await response.json()
    assert body["unstable_features"]["org.matrix.e2e_cross_signing"] is True
    versions = body["versions"]
    assert versions[0] == "r0.0.1" and "r0.6.1" in versions
    # Every v1 version but those standing for endpoints not served (tests/http/
    # test_client_startup.py checks which).
    missing = {f"v1.{n}" for n in range(1, 13)} - set(versions)
    assert missing <= set(versions_http.VERSION_REQUIRES)
    assert {"v1.1", "v1.12"} <= set(versions)
    assert response.headers["Access-Control-Allow-Origin"] == "*"


async def test_server_key_verifies(client: TestClient[Any, Any], homeserver: Homeserver) -> None:
    for path in ("/_matrix/key/v2/server", "/_matrix/key/v2/server/ed25519:a_test"):
        response = await client.get(path)
        assert response.status == 200
        body = await response.json()
        assert body["server_name"] == "test.example"
        assert body["old_verify_keys"] == {}
        assert body["valid_until_ts"] == FIXED_NOW_MS + 24 * 3600 * 1000
        ((key_id, key),) = body["verify_keys"].items()
        assert key_id == "ed25519:a_test"
        verify_key = decode_verify_key_bytes(key_id, decode_base64(key["key"]))
        verify_signed_json(body, "test.example", verify_key)  # raises if the signature is bad
        assert bytes(verify_key) == bytes(homeserver.signing_key.verify_key)


async def test_unknown_path_is_404_unrecognized(client: TestClient[Any, Any]) -> None:
    for path in ("/nope", "/_matrix/client/v3/nope", "/_matrix/key/v2/nope"):
        response = await client.get(path)
        assert response.status == 404
        assert await response.json() == UNRECOGNIZED


async def test_wrong_method_is_405_unrecognized(client: TestClient[Any, Any]) -> None:
    response = await client.post("/_matrix/client/versions", json={})
    assert response.status == 405
    assert await response.json() == UNRECOGNIZED
    assert "GET" in response.headers["Allow"]


async def test_cors_preflight(client: TestClient[Any, Any]) -> None:
    response = await client.options("/_matrix/client/v3/login")
    assert response.status == 204
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


async def test_resources_decide_the_routes(
    homeserver: Homeserver, aiohttp_client: ClientFactory
) -> None:
    keys_only = await aiohttp_client(create_app(homeserver, {"keys"}))
    assert (await keys_only.get("/health")).status == 200  # on every listener
    assert (await keys_only.get("/_matrix/key/v2/server")).status == 200
    assert (await keys_only.get("/_matrix/client/versions")).status == 404


async def test_errors_become_json(homeserver: Homeserver, aiohttp_client: ClientFactory) -> None:
    app = create_app(homeserver)

    async def forbidden(request: web.Request) -> web.Response:
        raise Forbidden("You are not invited to this room.")

    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError("secret internal detail")

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(await request.json())

    app.router.add_get("/forbidden", forbidden)
    app.router.add_get("/crash", crash)
    app.router.add_post("/echo", echo)
    client = await aiohttp_client(app)

    response = await client.get("/forbidden")
    assert response.status == 403
    assert await response.json() == {
        "errcode": "M_FORBIDDEN",
        "error": "You are not invited to this room.",
    }
    response = await client.get("/crash")
    assert response.status == 500
    text = await response.text()
    assert "secret internal detail" not in text and "Traceback" not in text
    assert await response.json() == {"errcode": "M_UNKNOWN", "error": "Internal server error"}
    response = await client.post("/echo", data=b"x" * (2 * 1024 * 1024))
    assert response.status == 413
    assert (await response.json())["errcode"] == "M_TOO_LARGE"
