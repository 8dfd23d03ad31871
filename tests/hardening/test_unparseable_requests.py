"""A request aiohttp cannot parse is refused before any middleware runs; it is still answered
with Matrix error JSON (414/431 ``M_TOO_LARGE`` past the 8 KB line limit, 400 ``M_UNKNOWN``
otherwise), and not logged as a server error."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from homeserver.http.guarded_server import ConnectionLimits, GuardedAppRunner

GENEROUS = 15.0


async def _ok(_request: web.Request) -> web.Response:
    return web.json_response({})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/ok", _ok)
    runner = GuardedAppRunner(app, ConnectionLimits(5.0, 5.0, 50), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site.port
    finally:
        await runner.cleanup()


async def _exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    data = await asyncio.wait_for(reader.read(), GENEROUS)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    content_type = next(
        line.split(b":", 1)[1].strip().decode()
        for line in head.split(b"\r\n")[1:]
        if line.lower().startswith(b"content-type:")
    )
    return status, json.loads(body), content_type


@pytest.mark.parametrize(
    ("raw", "status", "errcode"),
    [
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "M_TOO_LARGE"),
        (b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431, "M_TOO_LARGE"),
        (b"GET /ok HTTP/1.1\r\nHost: x\r\nX-" + b"c" * 9000 + b": 1\r\n\r\n", 431, "M_TOO_LARGE"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "M_UNKNOWN"),
        (b"GET /ok HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "M_UNKNOWN"),
    ],
    ids=["long-line", "long-header-value", "long-header-name", "garbage", "bad-length"],
)
async def test_unparseable_request_gets_matrix_json(
    port: int, raw: bytes, status: int, errcode: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        got_status, body, content_type = await _exchange(port, raw)
    assert (got_status, body["errcode"]) == (status, errcode)
    assert isinstance(body["error"], str) and content_type.startswith("application/json")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_normal_request_is_untouched(port: int) -> None:
    raw = b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    status, body, _ = await _exchange(port, raw)
    assert (status, body) == (200, {})
