"""Two in-process homeservers over one PostgreSQL schema and one Redis (127.0.0.1:6379, a key
and channel prefix of their own per test), as two processes of one deployment.

* ``redis_prefix`` — this test's prefix; its keys are deleted at teardown (never FLUSHDB:
  other tests share the Redis).
* ``pair(**overrides)`` — an async factory of ``(a, b)``: two :class:`TestServer`s named
  ``A`` and ``B`` with ``redis.enabled``, one signing key, their buses started (and stopped at
  teardown); ``redis=`` overrides the ``redis`` section (e.g. a closed port), ``wait=False``
  returns without waiting for the connections.
* ``RedisProxy`` — a TCP relay to the real Redis that a test can cut and restore.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from signedjson.key import generate_signing_key

from homeserver.app import Homeserver, create_app
from homeserver.storage import Store
from tests.builders import GENEROUS_LIMITS
from tests.conftest import OpenTestDatabase
from tests.harness import SERVER_NAME, TestServer, TickingClock, make_config

#: ``host:port`` of the test Redis (``scripts/test`` checks it answers; CI requires it).
REDIS_HOST, _PORT = os.environ.get("HOMESERVER_TEST_REDIS", "127.0.0.1:6379").rsplit(":", 1)
REDIS_PORT = int(_PORT)
SKIP_REDIS = os.environ.get("HOMESERVER_TEST_SKIP_REDIS") == "1"

Pair = Callable[..., Awaitable[tuple[TestServer, TestServer]]]

#: Every test here runs on PostgreSQL only: SQLite serves one process (Redis is ignored there).
postgres_only = pytest.mark.parametrize("db_engine", ["postgres"], indirect=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    if SKIP_REDIS:
        pytest.skip("!!! Redis tests SKIPPED: HOMESERVER_TEST_SKIP_REDIS=1 (Redis unreachable) !!!")
    prefix = f"test:{uuid.uuid4().hex}:"
    yield prefix
    client = aioredis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def pair(
    open_test_database: OpenTestDatabase,
    redis_prefix: str,
    tmp_path: Path,
    aiohttp_client: Any,
) -> AsyncIterator[Pair]:
    started: list[Homeserver] = []
    signing_key = generate_signing_key("a_test")

    async def make(
        *, redis: dict[str, Any] | None = None, wait: bool = True, **overrides: Any
    ) -> tuple[TestServer, TestServer]:
        servers = []
        for name in ("A", "B"):
            # One schema: the second pool finds it migrated.
            db = await open_test_database(migrate=not servers)
            config = make_config(
                tmp_path,
                **{
                    **GENEROUS_LIMITS,
                    "instance_name": name,
                    "enable_metrics": True,
                    "redis": {
                        "enabled": True,
                        "host": REDIS_HOST,
                        "port": REDIS_PORT,
                        "prefix": redis_prefix,
                        **(redis or {}),
                    },
                    **overrides,
                },
            )
            hs = Homeserver(config, signing_key, Store(db), clock=TickingClock())
            assert hs.redis_bus is not None
            hs.redis_bus.backoff_max = 0.5
            hs.redis_bus.start()
            started.append(hs)
            client = await aiohttp_client(create_app(hs))
            servers.append(TestServer(hs, client))
        if wait:
            for server in servers:
                assert server.hs.redis_bus is not None
                await asyncio.wait_for(server.hs.redis_bus.wait_connected(), 10)
        return servers[0], servers[1]

    yield make

    for hs in started:
        assert hs.redis_bus is not None
        await hs.redis_bus.stop()
        await hs.typing.stop()


class RedisProxy:
    """Relays 127.0.0.1:``port`` to the real Redis; :meth:`cut` closes the listener and every
    relayed connection, :meth:`restore` listens again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(REDIS_HOST, REDIS_PORT)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def redis_proxy() -> AsyncIterator[RedisProxy]:
    proxy = RedisProxy()
    await proxy.restore()
    yield proxy
    await proxy.cut()


__all__ = ["SERVER_NAME", "RedisProxy", "free_port", "postgres_only"]
