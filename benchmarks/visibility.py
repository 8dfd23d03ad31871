"""``scripts/bench visibility``: what history visibility costs on the client read paths, against
a real ``homeserver run`` process on each engine.

Per engine: a fresh server; alice makes a public room whose history is for ``joined`` members
(so each event's membership is looked at, not just a ``shared`` short cut), bob joins, alice
sends ``--events`` messages with a topic change every ``--state-every`` (so the events spread
over several state groups). Then bob, repeatedly (``--reads`` times each, medians reported):

* ``messages``: ``/messages`` backwards from the end, ``--page`` events;
* ``sync_initial``: an initial ``/sync`` whose timeline holds the whole room (limit
  ``--events``), so every event of the room is judged;
* ``sync_initial_default``: an initial ``/sync`` with the default filter (10 events).

Benchmarks measure; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any
from urllib.parse import quote

import aiohttp

from benchmarks._common import latency_summary, measure_engines, parse_engines
from benchmarks._server import bench_server

CS = "/_matrix/client/v3"


class _Client:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str = "") -> None:
        self.session = session
        self.base_url = base_url
        self.token = token

    async def call(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.session.request(
            method, self.base_url + CS + path, json=body, params=params, headers=headers
        ) as response:
            return response.status, await response.json(content_type=None)

    async def ok(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        status, answer = await self.call(method, path, body, params)
        if status != 200:  # a benchmark timing errors reports nonsense
            raise RuntimeError(f"{method} {path}: {status} {answer}")
        return answer


async def _register(session: aiohttp.ClientSession, base_url: str, name: str) -> _Client:
    anonymous = _Client(session, base_url)
    body: dict[str, Any] = {"username": name, "password": f"{name}-password-123"}
    status, answer = await anonymous.call("POST", "/register", body)
    if status == 401:
        body["auth"] = {"type": "m.login.dummy", "session": answer.get("session")}
        status, answer = await anonymous.call("POST", "/register", body)
    if status != 200:
        raise RuntimeError(f"register {name}: {status} {answer}")
    return _Client(session, base_url, answer["access_token"])


async def _timed(reads: int, action: Any) -> dict[str, float]:
    samples = []
    for _ in range(reads):
        started = time.perf_counter()
        await action()
        samples.append(time.perf_counter() - started)
    return latency_summary(samples)


async def _measure(args: argparse.Namespace, engine: str) -> dict[str, Any]:
    async with (
        bench_server(engine, args.postgres_dsn, "visibility") as server,
        aiohttp.ClientSession() as session,
    ):
        alice = await _register(session, server.base_url, "alice")
        bob = await _register(session, server.base_url, "bob")
        created = await alice.ok(
            "POST",
            "/createRoom",
            {
                "preset": "public_chat",
                "initial_state": [
                    {
                        "type": "m.room.history_visibility",
                        "state_key": "",
                        "content": {"history_visibility": "joined"},
                    }
                ],
            },
        )
        room_id = quote(created["room_id"])
        await bob.ok("POST", f"/rooms/{room_id}/join", {})
        for i in range(args.events):
            if args.state_every and i and i % args.state_every == 0:
                await alice.ok("PUT", f"/rooms/{room_id}/state/m.room.topic", {"topic": str(i)})
            else:
                await alice.ok(
                    "PUT",
                    f"/rooms/{room_id}/send/m.room.message/t{i}",
                    {"msgtype": "m.text", "body": f"message {i}"},
                )
        page = {"dir": "b", "limit": str(args.page)}
        full = {"filter": json.dumps({"room": {"timeline": {"limit": args.events}}})}
        chunk = await bob.ok("GET", f"/rooms/{room_id}/messages", params=page)
        synced = await bob.ok("GET", "/sync", params=full)
        timeline = synced["rooms"]["join"][created["room_id"]]["timeline"]["events"]
        return {
            "engine": engine,
            "room_events_seen_by_sync": len(timeline),
            "messages_page_events": len(chunk["chunk"]),
            "messages": await _timed(
                args.reads, lambda: bob.ok("GET", f"/rooms/{room_id}/messages", params=page)
            ),
            "sync_initial": await _timed(args.reads, lambda: bob.ok("GET", "/sync", params=full)),
            "sync_initial_default": await _timed(args.reads, lambda: bob.ok("GET", "/sync")),
        }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engines", default="sqlite,postgres", type=parse_engines)
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get(
            "HOMESERVER_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--events", type=int, default=1000, help="events alice sends")
    parser.add_argument("--state-every", type=int, default=100, help="a topic change every N")
    parser.add_argument("--page", type=int, default=100, help="/messages limit")
    parser.add_argument("--reads", type=int, default=20, help="timed requests per figure")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        args.events, args.state_every, args.page, args.reads = 60, 20, 20, 3
    results = await measure_engines(args, _measure)
    summary = {
        engine: {
            "messages_median_ms": result.get("messages", {}).get("median_ms"),
            "sync_initial_median_ms": result.get("sync_initial", {}).get("median_ms"),
            "sync_initial_default_median_ms": result.get("sync_initial_default", {}).get(
                "median_ms"
            ),
        }
        for engine, result in results.items()
    }
    return {
        "parameters": {
            "events": args.events,
            "state_every": args.state_every,
            "page": args.page,
            "reads": args.reads,
        },
        "summary": summary,
        "engines": results,
    }
