"""Slowloris and friends, over real sockets: a connection that never sends a request head, or
trickles it, is closed at the head timeout; a body that does not arrive in time is answered 408
and the connection closed; past max_connections a connection is refused with 503.

Every wait is bounded by GENEROUS (far above the configured timeouts) and ends on an event (EOF
or bytes read), never on a sleep followed by an assertion.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from homeserver.app import Homeserver, serve
from homeserver.config import HomeserverConfig
from homeserver.http.guarded_server import ConnectionLimits, GuardedAppRunner
from tests.federation.fake_remote import free_port
from tests.harness import make_config

HEAD_TIMEOUT = 0.5
BODY_TIMEOUT = 0.5
#: Far above the timeouts: a bound on the wait for the server to act, never a pause.
GENEROUS = 15.0


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(body=b"got %d" % len(body))


async def _ignore_body(request: web.Request) -> web.Response:
    return web.Response(body=b"ignored")


@contextlib.asynccontextmanager
async def _running(limits: ConnectionLimits) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_route("*", "/echo", _echo)
    app.router.add_route("*", "/ignore", _ignore_body)
    runner = GuardedAppRunner(app, limits, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site.port
    finally:
        await runner.cleanup()


@pytest.fixture
async def port() -> AsyncIterator[int]:
    limits = ConnectionLimits(
        header_timeout=HEAD_TIMEOUT, body_timeout=BODY_TIMEOUT, max_connections=50
    )
    async with _running(limits) as bound:
        yield bound


async def _read_until_eof(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before it closed. A server closing a socket with the client's bytes
    still unread makes the kernel answer with a reset rather than an end of stream (more so on
    a busy machine, where the trickle outpaces the server): that is a close too, and what
    arrived before it counts."""
    received = bytearray()

    async def read_all() -> None:
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(65536):
                received.extend(chunk)

    await asyncio.wait_for(read_all(), GENEROUS)
    return bytes(received)


async def test_a_prompt_request_is_served_and_kept_alive(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(2):
        writer.write(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GENEROUS)
        assert head.startswith(b"HTTP/1.1 200")
        assert await asyncio.wait_for(reader.readexactly(5), GENEROUS) == b"got 3"
    writer.close()


async def test_an_idle_connection_is_closed(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await _read_until_eof(reader) == b""
    writer.close()


async def test_an_idle_keepalive_connection_is_closed(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
    data = await _read_until_eof(reader)
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"got 0")
    writer.close()


async def test_a_trickled_head_is_cut_off(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    closed = asyncio.create_task(_read_until_eof(reader))
    head = b"GET /echo HTTP/1.1\r\nHost: a\r\n" + b"X-Slow: y\r\n" * 1000
    with contextlib.suppress(ConnectionError):
        for byte in head:  # one byte every 20 ms: the whole head would take minutes
            if closed.done():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.wait({closed}, timeout=0.02)
    assert await closed == b""
    writer.close()


async def test_a_trickled_head_after_a_first_request_is_cut_off(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
    first = await asyncio.wait_for(reader.readuntil(b"got 0"), GENEROUS)
    assert first.startswith(b"HTTP/1.1 200")
    closed = asyncio.create_task(_read_until_eof(reader))
    with contextlib.suppress(ConnectionError):
        for byte in b"GET /echo HTTP/1.1\r\n" + b"X-Slow: y\r\n" * 1000:
            if closed.done():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.wait({closed}, timeout=0.02)
    assert await closed == b""
    writer.close()


async def test_a_slow_body_is_answered_408_and_closed(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789")
    data = await _read_until_eof(reader)
    assert data.startswith(b"HTTP/1.1 408"), data
    writer.close()


async def test_an_unread_trickled_body_is_cut_off_after_the_answer(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    closed = asyncio.create_task(_read_until_eof(reader))
    writer.write(b"POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
    with contextlib.suppress(ConnectionError):
        for _ in range(100000):
            if closed.done():
                break
            writer.write(b"x")
            await writer.drain()
            await asyncio.wait({closed}, timeout=0.02)
    answer = await closed
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ignored")
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    writer.close()


async def test_a_trickled_body_is_cut_off(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    closed = asyncio.create_task(_read_until_eof(reader))
    writer.write(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
    with contextlib.suppress(ConnectionError):
        for _ in range(100000):
            if closed.done():
                break
            writer.write(b"x")
            await writer.drain()
            await asyncio.wait({closed}, timeout=0.02)
    assert (await closed).startswith(b"HTTP/1.1 408")
    writer.close()


async def test_connections_past_the_cap_are_refused() -> None:
    limits = ConnectionLimits(header_timeout=GENEROUS * 4, body_timeout=GENEROUS, max_connections=2)
    async with _running(limits) as bound:
        held = [await asyncio.open_connection("127.0.0.1", bound) for _ in range(2)]
        reader, writer = await asyncio.open_connection("127.0.0.1", bound)
        refused = await _read_until_eof(reader)
        assert refused.startswith(b"HTTP/1.1 503"), refused
        assert b"M_LIMIT_EXCEEDED" in refused
        writer.close()
        # A held connection still works; once one closes, a new one is served again.
        held_reader, held_writer = held[0]
        held_writer.write(b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert (await _read_until_eof(held_reader)).startswith(b"HTTP/1.1 200")
        held_writer.close()
        for _ in range(200):  # until the server has seen the close (bounded)
            new_reader, new_writer = await asyncio.open_connection("127.0.0.1", bound)
            new_writer.write(b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            with contextlib.suppress(ConnectionError):
                answer = await _read_until_eof(new_reader)
            new_writer.close()
            if answer.startswith(b"HTTP/1.1 200"):
                break
            await asyncio.sleep(0.05)
        assert answer.startswith(b"HTTP/1.1 200")
        for _, other_writer in held[1:]:
            other_writer.close()


# --- the real server applies each listener's limits -------------------------------------------
@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return make_config(
        tmp_path,
        listeners=[
            {
                "port": free_port(),
                "bind_addresses": ["127.0.0.1"],
                "resources": [{"names": ["client"]}],
                "request_header_timeout": "500ms",
                "request_body_timeout": 0.5,
                "max_connections": 3,
            }
        ],
    )


async def test_listener_limits_from_the_config(hs: Homeserver) -> None:
    listener = hs.config.listeners[0]
    assert (listener.request_header_timeout, listener.request_body_timeout) == (0.5, 0.5)
    assert listener.max_connections == 3
    stop = asyncio.Event()
    task = asyncio.create_task(serve(hs, stop))
    try:
        for _ in range(200):  # until the listener is up (bounded)
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        assert await _read_until_eof(reader) == b""  # idle: closed at the head timeout
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        writer.write(
            b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: a\r\nContent-Length: 50\r\n\r\n{"
        )
        data = await _read_until_eof(reader)
        assert data.startswith(b"HTTP/1.1 408") and b'"errcode": "M_UNKNOWN"' in data
        writer.close()
    finally:
        stop.set()
        await task


def test_defaults_and_bad_values(tmp_path: Path) -> None:
    listener = make_config(tmp_path).listeners[0]
    assert (listener.request_header_timeout, listener.request_body_timeout) == (30.0, 60.0)
    assert listener.max_connections == 800
    base = {"port": 8008, "resources": [{"names": ["client"]}]}
    for bad in ({"max_connections": 0}, {"request_header_timeout": "soon"}):
        with pytest.raises(Exception, match="listeners\\[0\\]"):
            make_config(tmp_path, listeners=[{**base, **bad}])
