"""PostgreSQL stopped and started again under a load of writes, with our server left running.

The server answers 503 ``M_UNKNOWN`` "…temporarily unavailable" while the database is away —
never a 500 — picks the database up again by itself, and every write it acknowledged (200) is in
the database afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.degrade.pg_instance import PostgresInstance, available, postgres_instance
from tests.http_client import Client
from tests.real_clients.nio_helpers import RELAXED_LIMIT
from tests.real_clients.server_process import (
    free_port,
    generate_config,
    start_process,
    stop_process,
    wait_for_health,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not available(), reason="no PostgreSQL binaries (initdb/pg_ctl)"),
]

WORKERS = 4
#: How much load each phase needs before the test moves on (counts, not durations).
ACKED_BEFORE_STOP = 20
UNAVAILABLE_WHILE_DOWN = 10
ACKED_AFTER_START = 30
PHASE_DEADLINE = 120  # seconds: only to fail instead of hanging


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    acked_events: set[str] = field(default_factory=set)
    acked_rooms: set[str] = field(default_factory=set)
    unavailable_bodies: list[object] = field(default_factory=list)
    other_errors: list[tuple[int, object]] = field(default_factory=list)
    acked: int = 0
    unavailable: int = 0


@pytest.fixture
def postgres() -> Iterator[PostgresInstance]:
    with postgres_instance() as instance:
        yield instance


async def _writer(client: Client, token: str, room_id: str, tally: Tally, stop: asyncio.Event,
                  counter: Iterator[int]) -> None:  # fmt: skip
    while not stop.is_set():
        n = next(counter)
        if n % 5 == 0:
            status, body = await client.call("POST", "/createRoom", token, json={"name": f"r{n}"})
        else:
            status, body = await client.call(
                "PUT",
                f"/rooms/{room_id}/send/m.room.message/load{n}",
                token,
                json={"msgtype": "m.text", "body": f"message {n}"},
            )
        tally.statuses[status] += 1
        if status == 200:
            tally.acked += 1
            if "room_id" in body:
                tally.acked_rooms.add(body["room_id"])
            else:
                tally.acked_events.add(body["event_id"])
        elif status == 503:
            tally.unavailable += 1
            tally.unavailable_bodies.append(body)
            await asyncio.sleep(0.05)  # a client backing off a little, as a real one would
        else:
            tally.other_errors.append((status, body))


async def _until(condition: object, what: str) -> None:
    async def wait() -> None:
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(wait(), PHASE_DEADLINE)
    except TimeoutError:
        raise AssertionError(f"the load never reached: {what}") from None


async def test_postgres_restart_under_load(postgres: PostgresInstance, tmp_path: Path) -> None:
    port = free_port()
    config_path = generate_config(
        tmp_path,
        "outage.test",
        port,
        {
            "database": {
                "name": "psycopg2",
                "args": {"dsn": postgres.dsn, "cp_min": 1, "cp_max": 5},
            },
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "rc_room_creation": RELAXED_LIMIT,
            "rc_message": RELAXED_LIMIT,
            "rc_registration": RELAXED_LIMIT,
        },
    )
    log_path = tmp_path / "server.log"
    process = start_process(config_path, log_path)
    base = f"http://127.0.0.1:{port}"
    tally = Tally()
    try:
        wait_for_health(base, process)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            client = Client(session, base)
            _, token = await client.register("loader", "loader-password-1")
            status, room = await client.call("POST", "/createRoom", token, json={})
            assert status == 200, room
            stop = asyncio.Event()
            counter = itertools.count()
            workers = [
                asyncio.create_task(_writer(client, token, room["room_id"], tally, stop, counter))
                for _ in range(WORKERS)
            ]
            try:
                await _until(lambda: tally.acked >= ACKED_BEFORE_STOP, "writes before the stop")
                await asyncio.to_thread(postgres.stop, "fast")
                unavailable_at_stop = tally.unavailable
                await _until(
                    lambda: tally.unavailable >= unavailable_at_stop + UNAVAILABLE_WHILE_DOWN,
                    "503s while PostgreSQL is down",
                )
                await asyncio.to_thread(postgres.start)
                acked_at_start = tally.acked
                await _until(
                    lambda: tally.acked >= acked_at_start + ACKED_AFTER_START,
                    "acknowledged writes after PostgreSQL came back",
                )
            finally:
                stop.set()
                await asyncio.gather(*workers, return_exceptions=True)
            for worker in workers:
                worker.result()  # a transport error (server died, hung) fails the test here
        assert process.poll() is None, "the server stopped; it must ride out the outage"
    finally:
        stop_process(process)

    print(f"\nPostgreSQL outage: statuses {dict(tally.statuses)}")
    log_text = log_path.read_text(encoding="utf-8", errors="replace")
    assert not tally.other_errors, (tally.other_errors[:5], log_text[-6000:])
    assert tally.statuses[500] == 0
    assert tally.unavailable >= UNAVAILABLE_WHILE_DOWN
    for body in tally.unavailable_bodies:
        assert isinstance(body, dict) and body["errcode"] == "M_UNKNOWN", body
        assert "temporarily unavailable" in body["error"], body

    conn = await asyncpg.connect(postgres.dsn)
    try:
        stored_events = {
            row[0]
            for row in await conn.fetch(
                "SELECT event_id FROM events WHERE event_id = ANY($1::text[])",
                list(tally.acked_events),
            )
        }
        stored_rooms = {
            row[0]
            for row in await conn.fetch(
                "SELECT room_id FROM rooms WHERE room_id = ANY($1::text[])",
                list(tally.acked_rooms),
            )
        }
    finally:
        await conn.close()
    assert tally.acked_events and tally.acked_rooms
    assert tally.acked_events - stored_events == set(), "acknowledged events lost"
    assert tally.acked_rooms - stored_rooms == set(), "acknowledged rooms lost"
    server_log = log_path.read_text(errors="replace")
    assert "database unavailable" in server_log
