"""A real ``homeserver run`` process for the client-driven suites (``create``, ``upgrade``), and
the shared room-lifecycle client (``../shared/bench/bench_rooms.py``) run against it.

Per engine: a fresh data directory (SQLite) or a fresh PostgreSQL database (dropped after), a
generated config with the rate limits lifted (the benchmarks measure work, not throttling).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.real_clients.server_process import free_port, generate_config, server_env

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_CLIENT = REPO_ROOT.parent / "shared" / "bench" / "bench_rooms.py"
UNLIMITED = {"per_second": 100000, "burst_count": 100000}


@dataclass(frozen=True, slots=True)
class BenchServer:
    base_url: str
    pid: int


def write_config(workdir: Path, port: int, database: dict[str, Any]) -> Path:
    """A generated config (the same helper the end-to-end tests use) with ``database`` and the
    rate limits lifted."""
    return generate_config(
        workdir,
        "bench.test",
        port,
        {
            "database": database,
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "rc_room_creation": UNLIMITED,
            "rc_message": UNLIMITED,
            "rc_registration": UNLIMITED,
            "rc_login": UNLIMITED,
            "rc_joins": {"local": UNLIMITED, "remote": UNLIMITED},
            "rc_invites": UNLIMITED,
            "rc_to_device": UNLIMITED,
            "rc_remote_key_fetches": UNLIMITED,
            "rc_media_create": UNLIMITED,
        },
    )


async def wait_for_health(base_url: str, process: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            if process.poll() is not None:
                raise RuntimeError("homeserver exited during start-up")
            try:
                async with session.get(base_url + "/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("homeserver did not start")


@asynccontextmanager
async def bench_server(engine: str, postgres_dsn: str, label: str) -> AsyncIterator[BenchServer]:
    """A started server on ``engine`` with an empty database of its own; stopped and its
    database dropped afterwards."""
    port = free_port()
    database_name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = None
    with tempfile.TemporaryDirectory(prefix=f"bench-{label}-{engine}-") as tmp:
        workdir = Path(tmp)
        if engine == "sqlite":
            database: dict[str, Any] = {
                "name": "sqlite3",
                "args": {"database": str(workdir / "bench.db")},
            }
        else:
            admin = await asyncpg.connect(postgres_dsn)
            await admin.execute(f'CREATE DATABASE "{database_name}"')
            dsn = postgres_dsn.rsplit("/", 1)[0] + "/" + database_name
            database = {"name": "psycopg2", "args": {"dsn": dsn, "cp_min": 5, "cp_max": 10}}
        config_path = write_config(workdir, port, database)
        log = (workdir / "server.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "homeserver", "run", "--config-path", str(config_path)],
            env=server_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            await wait_for_health(base_url, process)
            yield BenchServer(base_url, process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()
            if admin is not None:
                await admin.execute(f'DROP DATABASE IF EXISTS "{database_name}"')
                await admin.close()


async def run_client(client: Path, server: BenchServer, arguments: Sequence[str]) -> dict[str, Any]:
    """Run the shared client against ``server``; its JSON, or ``{"error": ...}``."""
    command = [
        sys.executable,
        str(client),
        "--base-url",
        server.base_url,
        "--server-pid",
        str(server.pid),
        *arguments,
    ]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await process.communicate()
    if not stdout.strip():
        return {"error": stderr.decode(errors="replace")[-2000:]}
    result: dict[str, Any] = json.loads(stdout)
    return result
