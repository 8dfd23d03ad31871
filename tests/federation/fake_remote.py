"""Test peers for federation: a fake remote homeserver, and our server on a loopback TLS listener.

``FakeRemoteServer`` owns an ed25519 key and the server name ``localhost:PORT``; it serves
``GET /_matrix/key/v2/server`` (self-signed, like a real server) and any handlers a test adds,
over HTTPS on 127.0.0.1 with a self-signed certificate, and records every request it receives::

    async with FakeRemoteServer(tmp_path) as remote:
        remote.add_handler("PUT", "/_matrix/federation/v1/send/{txn_id}", on_send)
        pdu = remote.sign_pdu(room_version, {...})            # content hash + signature
        status, body = await remote.request("PUT", our_base_url, path, body)

A handler is ``async def on_send(request: ReceivedRequest) -> Any`` and returns a JSON body
(answered 200), a ``(status, body)`` pair, or an ``aiohttp.web.StreamResponse``.

``federation_test_config(tmp_path, **overrides)`` builds the config of *our* server for loopback
federation (``localhost:PORT``, a TLS listener serving client + federation, no certificate
checks, loopback whitelisted); ``async with serving(hs): ...`` runs its listeners.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from nacl.signing import SigningKey, VerifyKey
from yarl import URL

from homeserver.config import HomeserverConfig
from homeserver.crypto.base64 import encode_base64
from homeserver.crypto.canonical_json import encode_canonical_json
from homeserver.crypto.signing import generate_signing_key, get_verify_key, key_id, sign_json
from homeserver.events.hashes import add_content_hash
from homeserver.events.ids import compute_event_id
from homeserver.events.signing import sign_event
from homeserver.federation.xmatrix import authorization_header, parse_header, signed_bytes
from homeserver.room_versions import RoomVersion
from tests.federation.tls_helpers import client_ssl_context, self_signed_cert, server_ssl_context
from tests.harness import make_config

LOOPBACK_WHITELIST = ["127.0.0.0/8", "::1/128"]
DAY_MS = 24 * 3600 * 1000


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process could take it; fine in tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ReceivedRequest:
    method: str
    #: the request target exactly as received (percent-encoded path and query).
    raw_path: str
    #: the decoded path.
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    #: values of the ``{name}`` parts of the handler's path template.
    params: dict[str, str] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        import json

        return json.loads(self.body) if self.body else None

    def x_matrix_origin(self, verify_key: VerifyKey, destination: str) -> str:
        """Check the request's X-Matrix signature against ``verify_key`` (the origin's key) and
        return the origin; raises AssertionError / nacl BadSignatureError if it is wrong."""
        credential = parse_header(self.headers["Authorization"])
        assert credential.destination == destination, credential
        verify_key.verify(
            signed_bytes(self.method, self.raw_path, credential.origin, destination, self.json),
            _b64decode(credential.signature),
        )
        return credential.origin


def _b64decode(text: str) -> bytes:
    from homeserver.crypto.base64 import decode_base64

    return decode_base64(text)


Handler = Callable[[ReceivedRequest], Awaitable[Any]]


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    pattern = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)"
        for index, part in enumerate(parts)
    )
    return re.compile(pattern + r"\Z")


class FakeRemoteServer:
    """A remote homeserver under the test's control (see the module docstring)."""

    def __init__(self, tmp_path: Path, *, key_version: str = "remote1") -> None:
        self.tmp_path = tmp_path
        self.signing_key: SigningKey = generate_signing_key(key_version)
        self.verify_key: VerifyKey = get_verify_key(self.signing_key)
        self.key_id = key_id(self.signing_key)
        self.port = 0
        #: key_id → {"key": …, "expired_ts": …}, served as old_verify_keys.
        self.old_verify_keys: dict[str, dict[str, Any]] = {}
        #: None: now + 1 day at each request.
        self.valid_until_ts: int | None = None
        #: Replace to serve a different key document (e.g. a forged one).
        self.keys_override: Callable[[], dict[str, Any]] | None = None
        self.received: list[ReceivedRequest] = []
        self._handlers: list[tuple[str, re.Pattern[str], Handler]] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def server_name(self) -> str:
        return f"localhost:{self.port}"

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def verify_key_base64(self) -> str:
        return encode_base64(bytes(self.verify_key))

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        cert, key = self_signed_cert(self.tmp_path / f"remote-tls-{id(self)}")
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=server_ssl_context(cert, key))
        await site.start()
        server = site._server
        assert server is not None
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeRemoteServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- serving ---------------------------------------------------------------------------

    def add_handler(self, method: str, template: str, handler: Handler) -> None:
        """Answer ``method template`` (``{name}`` matches one decoded path segment) with
        ``handler``. Later handlers win over earlier ones for the same request."""
        self._handlers.insert(0, (method.upper(), _template_regex(template), handler))

    def keys_document(self) -> dict[str, Any]:
        if self.keys_override is not None:
            return self.keys_override()
        valid_until = self.valid_until_ts
        if valid_until is None:
            valid_until = int(time.time() * 1000) + DAY_MS
        document: dict[str, Any] = {
            "server_name": self.server_name,
            "verify_keys": {self.key_id: {"key": self.verify_key_base64}},
            "old_verify_keys": dict(self.old_verify_keys),
            "valid_until_ts": valid_until,
        }
        return sign_json(document, self.server_name, self.signing_key)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        received = ReceivedRequest(
            method=request.method,
            raw_path=request.raw_path,
            path=request.path,
            query={k: request.query.getall(k) for k in request.query},
            headers=dict(request.headers),
            body=await request.read(),
        )
        self.received.append(received)
        for method, regex, handler in self._handlers:
            match = regex.match(request.path)
            if match and method == request.method:
                received.params = match.groupdict()
                return _to_response(await handler(received))
        if request.method == "GET" and request.path in (
            "/_matrix/key/v2/server",
            f"/_matrix/key/v2/server/{self.key_id}",
        ):
            return web.json_response(self.keys_document())
        return web.json_response(
            {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}, status=404
        )

    def requests_to(self, path_prefix: str) -> list[ReceivedRequest]:
        return [r for r in self.received if r.path.startswith(path_prefix)]

    # --- signing -------------------------------------------------------------------------

    def sign_json(self, obj: dict[str, Any]) -> dict[str, Any]:
        return sign_json(obj, self.server_name, self.signing_key)

    def sign_pdu(self, room_version: RoomVersion, pdu: dict[str, Any]) -> dict[str, Any]:
        """Add the content hash and this server's signature to ``pdu`` (in place; returned)."""
        pdu.pop("hashes", None)
        add_content_hash(pdu)
        sign_event(room_version, pdu, self.server_name, self.signing_key)
        return pdu

    @staticmethod
    def event_id(room_version: RoomVersion, pdu: dict[str, Any]) -> str:
        return compute_event_id(room_version, pdu)

    # --- requests to our server -----------------------------------------------------------

    async def request(
        self,
        method: str,
        base_url: str,
        path: str,
        body: Any = None,
        *,
        destination: str | None = None,
        headers: dict[str, str] | None = None,
        sign: bool = True,
    ) -> tuple[int, Any]:
        """Send an X-Matrix-signed request to ``base_url`` + ``path`` (already percent-encoded,
        may include ``?query``); return ``(status, json or text)``.

        ``destination`` defaults to ``base_url``'s host:port, so use
        ``https://localhost:PORT`` for a server named ``localhost:PORT``.
        """
        if destination is None:
            destination = urlsplit(base_url).netloc
        all_headers = dict(headers or {})
        data: bytes | None = None
        if body is not None:
            data = encode_canonical_json(body)
            all_headers.setdefault("Content-Type", "application/json")
        if sign:
            all_headers.setdefault(
                "Authorization",
                authorization_header(
                    self.signing_key, method, path, self.server_name, destination, body
                ),
            )
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=client_ssl_context())
            )
        url = URL(base_url.rstrip("/") + path, encoded=True)
        async with self._session.request(method, url, data=data, headers=all_headers) as resp:
            text = await resp.text()
            try:
                import json

                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text


def _to_response(result: Any) -> web.StreamResponse:
    if isinstance(result, web.StreamResponse):
        return result
    status = 200
    if isinstance(result, tuple):
        status, result = result
    return web.Response(
        body=encode_canonical_json(result), status=status, content_type="application/json"
    )


# --- our server on loopback -------------------------------------------------------------------


def federation_test_config(tmp_path: Path, **overrides: Any) -> HomeserverConfig:
    """Config for our server federating on loopback: ``server_name`` ``localhost:PORT`` (a free
    port), one TLS listener on 127.0.0.1:PORT serving client + federation (+ keys) with a fresh
    self-signed certificate, ``federation_verify_certificates: false``, loopback whitelisted.
    ``overrides`` replace top-level keys."""
    port = free_port()
    cert, key = self_signed_cert(tmp_path / "tls")
    data: dict[str, Any] = {
        "server_name": f"localhost:{port}",
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": True,
                "resources": [{"names": ["client", "federation"]}],
            }
        ],
        "tls_certificate_path": str(cert),
        "tls_private_key_path": str(key),
        "federation_verify_certificates": False,
        "ip_range_whitelist": list(LOOPBACK_WHITELIST),
    }
    data.update(overrides)
    return make_config(tmp_path, **data)


def base_url_of(config: HomeserverConfig) -> str:
    """``https://localhost:PORT`` of the first listener (the URL a peer would use)."""
    listener = config.listeners[0]
    scheme = "https" if listener.tls else "http"
    return f"{scheme}://localhost:{listener.port}"


@asynccontextmanager
async def serving(hs: Any) -> AsyncIterator[str]:
    """Run ``hs``'s listeners (homeserver.app.serve) for the block; yields the base URL."""
    from homeserver.app import serve

    stop = asyncio.Event()
    task = asyncio.create_task(serve(hs, stop))
    listener = hs.config.listeners[0]
    for _ in range(500):
        if task.done():
            task.result()  # raises the start-up error
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        writer.close()
        await writer.wait_closed()
        break
    try:
        yield base_url_of(hs.config)
    finally:
        stop.set()
        await task
