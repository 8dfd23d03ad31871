"""Two processes (in-process homeservers A and B) over one PostgreSQL schema and one Redis:
a write on one wakes long polls on the other well under the fallback interval, a redaction on
B is seen on A through the event cache, typing and the rc_* budget are shared; with Redis
unreachable both keep serving (long polls woken by the fallback poll, the metric at 0) and
reconnect by themselves."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from homeserver.streams.redis_bus import FALLBACK_INTERVAL_S
from tests.builders import create_room
from tests.harness import TestServer, TestUser
from tests.redis.conftest import Pair, RedisProxy, postgres_only
from tests.sync.helpers import sync, timeline_bodies

pytestmark = postgres_only

#: A wake-up through Redis must come well before the fallback poll could have done it.
WAKE_LIMIT_S = FALLBACK_INTERVAL_S / 2


async def _send(server: TestServer, user: TestUser, room_id: str, body: str, txn: str) -> str:
    status, answer = await server.call(
        "PUT",
        f"/rooms/{room_id}/send/m.room.message/{txn}",
        user,
        json={"msgtype": "m.text", "body": body},
    )
    assert status == 200, answer
    return str(answer["event_id"])


async def _woken_by(a: TestServer, b: TestServer, body: str) -> float:
    """Seconds from a send on ``b`` to the end of a long poll on ``a`` that sees it."""
    alice = await a.register(f"alice{int(time.monotonic() * 1e6)}")
    room_id = await create_room(a, alice, preset="private_chat")
    first = await sync(a, alice)
    poll = asyncio.create_task(sync(a, alice, since=first["next_batch"], timeout="20000"))
    await a.hs.notifier.parked()
    started = time.monotonic()
    await _send(b, alice, room_id, body, "t1")
    woken = await asyncio.wait_for(poll, 15)
    elapsed = time.monotonic() - started
    assert timeline_bodies(woken, room_id) == [body]
    return elapsed


async def test_a_redaction_on_b_reaches_the_event_cache_of_a(pair: Pair) -> None:
    a, b = await pair()
    alice = await a.register("alice")
    room_id = await create_room(a, alice, preset="private_chat")
    event_id = await _send(a, alice, room_id, "secret", "t1")
    status, before = await a.call("GET", f"/rooms/{room_id}/event/{event_id}", alice)
    assert status == 200 and before["content"]["body"] == "secret"  # now cached on A

    status, _ = await b.call(
        "PUT", f"/rooms/{room_id}/redact/{event_id}/r1", alice, json={"reason": "oops"}
    )
    assert status == 200
    deadline = time.monotonic() + 5
    while True:
        status, after = await a.call("GET", f"/rooms/{room_id}/event/{event_id}", alice)
        assert status == 200
        if after["content"] == {} or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert after["content"] == {}
    assert "redacted_because" in after["unsigned"]


async def test_a_send_and_typing_on_b_wake_a_long_poll_on_a(pair: Pair) -> None:
    a, b = await pair()
    assert await _woken_by(a, b, "hello from B") < WAKE_LIMIT_S
    assert a.hs.metrics.value("homeserver_redis_connected") == 1.0

    alice = await a.register("alice")
    room_id = await create_room(a, alice, preset="private_chat")
    first = await sync(a, alice)
    poll = asyncio.create_task(sync(a, alice, since=first["next_batch"], timeout="20000"))
    await a.hs.notifier.parked()
    status, _ = await b.call(
        "PUT", f"/rooms/{room_id}/typing/{alice.user_id}", alice, json={"typing": True}
    )
    assert status == 200
    woken = await asyncio.wait_for(poll, WAKE_LIMIT_S)
    events = woken["rooms"]["join"][room_id]["ephemeral"]["events"]
    assert [e["content"]["user_ids"] for e in events if e["type"] == "m.typing"] == [
        [alice.user_id]
    ]
    # Stopping on A (the other process) reaches B.
    status, _ = await a.call(
        "PUT", f"/rooms/{room_id}/typing/{alice.user_id}", alice, json={"typing": False}
    )
    assert status == 200
    deadline = time.monotonic() + 5
    while b.hs.typing.typers(room_id) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert b.hs.typing.typers(room_id) == []


async def test_the_room_creation_budget_is_shared(pair: Pair) -> None:
    a, b = await pair(rc_room_creation={"per_second": 0.001, "burst_count": 10})
    alice = await a.register("alice")
    for i in range(10):
        server = (a, b)[i % 2]
        status, body = await server.call("POST", "/createRoom", alice, json={})
        assert status == 200, (i, body)
    for server in (a, b):
        status, body = await server.call("POST", "/createRoom", alice, json={})
        assert status == 429, body
        assert body["errcode"] == "M_LIMIT_EXCEEDED"
        assert body["retry_after_ms"] > 0
    # Another user's budget is untouched.
    bob = await b.register("bob")
    assert (await a.call("POST", "/createRoom", bob, json={}))[0] == 200


async def test_without_redis_both_keep_serving_and_reconnect_when_it_is_back(
    pair: Pair, redis_proxy: RedisProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="homeserver.streams.redis_bus")
    await redis_proxy.cut()  # a closed port from the start
    a, b = await pair(redis={"port": redis_proxy.port}, wait=False)
    for server in (a, b):
        assert server.hs.redis_bus is not None and not server.hs.redis_bus.connected
        assert server.hs.metrics.value("homeserver_redis_connected") == 0.0
    alice = await a.register("alice")
    # Rate limits fall back to each process's own buckets; nothing answers 5xx.
    status, _ = await b.call("POST", "/createRoom", alice, json={})
    assert status == 200
    # Long polls are woken by the fallback poll of the stream positions.
    assert await _woken_by(a, b, "through the database") < FALLBACK_INTERVAL_S * 2.5
    bus = a.hs.redis_bus
    assert bus is not None and bus.connections == 0
    assert any(r.levelno == logging.WARNING and "unreachable" in r.message for r in caplog.records)

    await redis_proxy.restore()
    for server in (a, b):
        assert server.hs.redis_bus is not None
        await asyncio.wait_for(server.hs.redis_bus.wait_connected(True), 10)
    assert a.hs.metrics.value("homeserver_redis_connected") == 1.0
    assert any(r.levelno == logging.INFO and "reachable again" in r.message for r in caplog.records)
    assert await _woken_by(a, b, "through Redis") < WAKE_LIMIT_S

    # Lost again while serving: noticed, and the fallback takes over.
    await redis_proxy.cut()
    await asyncio.wait_for(bus.wait_connected(False), 10)
    assert a.hs.metrics.value("homeserver_redis_connected") == 0.0
    assert await _woken_by(a, b, "away again") < FALLBACK_INTERVAL_S * 2.5
