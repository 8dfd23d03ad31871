"""A real ``homeserver run`` with an HTTP pusher and a push gateway run by the test: the gateway
receives each notification exactly once, across a restart that leaves a notification queued
(the gateway failed it before the stop). One case per engine."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests.crash.harness import ENGINES, crash_server
from tests.http_client import Client, q

NOTIFY = "/_matrix/push/v1/notify"


class Gateway:
    """Records the event IDs it accepted (200) and refused (503, while ``failing``)."""

    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.refused: list[str] = []
        self.failing = False
        self.changed = asyncio.Event()

    async def notify(self, request: web.Request) -> web.Response:
        body = await request.json()
        event_id = body["notification"]["event_id"]
        (self.refused if self.failing else self.accepted).append(event_id)
        self.changed.set()
        if self.failing:
            return web.json_response({}, status=503)
        return web.json_response({"rejected": []})

    async def wait_for(self, predicate: Any, timeout: float = 30) -> None:
        async def loop() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), timeout)


@pytest.mark.parametrize("engine", ENGINES)
async def test_gateway_gets_each_notification_once_across_restart(
    tmp_path: Path, engine: str, aiohttp_server: Any
):
    gateway = Gateway()
    app = web.Application()
    app.router.add_post(NOTIFY, gateway.notify)
    gateway_server = await aiohttp_server(app, host="127.0.0.1")
    url = f"http://127.0.0.1:{gateway_server.port}{NOTIFY}"

    async with crash_server(tmp_path, engine) as server:
        config = yaml.safe_load(server.config_path.read_text())
        config["ip_range_whitelist"] = ["127.0.0.1/32"]
        server.config_path.write_text(yaml.safe_dump(config))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            client = Client(session, server.start())
            _, alice = await client.register("alice")
            _, bob = await client.register("bob")
            room = await client.ok("POST", "/createRoom", alice, {"preset": "public_chat"})
            room_id = room["room_id"]
            await client.ok("POST", f"/join/{q(room_id)}", bob, {})
            pusher = {
                "kind": "http",
                "app_id": "org.example.app",
                "app_display_name": "Example",
                "device_display_name": "Phone",
                "pushkey": "bob-phone",
                "lang": "en",
                "data": {"url": url, "format": "event_id_only"},
            }
            await client.ok("POST", "/pushers/set", bob, pusher)

            async def say(text: str, txn: str) -> str:
                path = f"/rooms/{q(room_id)}/send/m.room.message/{txn}"
                body = await client.ok("PUT", path, alice, {"msgtype": "m.text", "body": text})
                return str(body["event_id"])

            first = await say("one", "t1")
            await gateway.wait_for(lambda: first in gateway.accepted)
            gateway.failing = True
            second = await say("two", "t2")
            await gateway.wait_for(lambda: second in gateway.refused)
            server.stop()  # the second notification stays queued, in backoff

            gateway.failing = False
            client.base_url = server.start()
            await gateway.wait_for(lambda: second in gateway.accepted)
            third = await say("three", "t3")
            await gateway.wait_for(lambda: third in gateway.accepted)
            _, body = await client.call("GET", "/notifications", bob)
            assert [n["event"]["event_id"] for n in body["notifications"]] == [
                third,
                second,
                first,
            ]
            assert gateway.accepted == [first, second, third], server.log()[-3000:]
            assert await server.probe.value("SELECT COUNT(*) FROM push_outbox") == 0
