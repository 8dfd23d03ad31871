"""A real ``homeserver run`` process for the client-driven suites (``create``, ``upgrade``), and
the shared room-lifecycle client (``../shared/bench/bench_rooms.py``) run against it.

Per engine: a fresh data directory (SQLite) or a fresh PostgreSQL database (dropped after), a
generated config with the rate limits lifted (the benchmarks measure work, not throttling), the
metrics resource on the client listener (statements per transaction are read from
``homeserver_storage_transaction_statements``) and cheap password hashing (``password_hashing``:
the suites register thousands of throw-away users; registration is setup, never measured).

:func:`synapse_server` starts the ``matrix-synapse`` test dependency the same way (registration
open, rate limits lifted, cheap bcrypt), so a suite can run the same client against it.
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
import yaml

from tests.real_clients.server_process import free_port, generate_config, server_env

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_CLIENT = REPO_ROOT.parent / "shared" / "bench" / "bench_rooms.py"
UNLIMITED = {"per_second": 100000, "burst_count": 100000}
#: argon2's floor: registering 10,000 bench users takes seconds, not the better part of an hour.
CHEAP_PASSWORD_HASHING = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


@dataclass(frozen=True, slots=True)
class BenchServer:
    base_url: str
    pid: int
    #: ours: the metrics endpoint (None for Synapse, whose metrics are not ours to read).
    metrics_url: str | None = None


def write_config(workdir: Path, port: int, database: dict[str, Any]) -> Path:
    """A generated config (the same helper the end-to-end tests use) with ``database`` and the
    rate limits lifted."""
    config_path = generate_config(
        workdir,
        "bench.test",
        port,
        {
            "database": database,
            "enable_metrics": True,
            "password_hashing": CHEAP_PASSWORD_HASHING,
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
    config = yaml.safe_load(config_path.read_text())
    config["listeners"][0]["resources"][0]["names"].append("metrics")
    config_path.write_text(yaml.safe_dump(config))
    return config_path


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
            yield BenchServer(base_url, process.pid, base_url + "/_synapse/metrics")
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


async def transaction_stats(server: BenchServer) -> dict[str, dict[str, float]]:
    """Per transaction name: how many ran (``count``), their ``seconds`` and ``statements``
    so far, read from the server's metrics."""
    if server.metrics_url is None:
        return {}
    async with aiohttp.ClientSession() as session, session.get(server.metrics_url) as response:
        text = await response.text()
    stats: dict[str, dict[str, float]] = {}
    wanted = {
        "synapse_storage_transaction_time_count": "count",
        "synapse_storage_transaction_time_sum": "seconds",
        "homeserver_storage_transaction_statements_total": "statements",
        "homeserver_storage_transaction_shared_commits_total": "shared_commits",
    }
    for line in text.splitlines():
        if line.startswith("#") or "{" not in line:
            continue
        metric, _, rest = line.partition("{")
        field = wanted.get(metric)
        if field is None:
            continue
        labels, _, value = rest.rpartition("} ")
        name = (
            dict(part.split("=", 1) for part in labels.split(",") if "=" in part)
            .get("desc", "")
            .strip('"')
        )
        stats.setdefault(name, {})[field] = float(value)
    return stats


def stats_delta(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """What ran between two :func:`transaction_stats` readings, by transaction name."""
    delta: dict[str, dict[str, float]] = {}
    for name, figures in after.items():
        earlier = before.get(name, {})
        changed = {k: v - earlier.get(k, 0.0) for k, v in figures.items()}
        if changed.get("count"):
            delta[name] = changed
    return delta


def per_operation(delta: dict[str, dict[str, float]], operations: int) -> dict[str, Any]:
    """Statements and transaction time per operation: all transactions, and by name."""
    statements = sum(f.get("statements", 0.0) for f in delta.values())
    seconds = sum(f.get("seconds", 0.0) for f in delta.values())
    return {
        "statements_per_op": round(statements / max(operations, 1), 2),
        "transaction_ms_per_op": round(seconds * 1000 / max(operations, 1), 3),
        "by_transaction": {
            name: {
                "per_op": round(f.get("count", 0.0) / max(operations, 1), 3),
                "statements_each": round(f.get("statements", 0.0) / f["count"], 2),
                "ms_each": round(f.get("seconds", 0.0) * 1000 / f["count"], 3),
                # share of them that committed together with others (SQLite group commit)
                "shared_commit_share": round(f.get("shared_commits", 0.0) / f["count"], 3),
            }
            for name, f in sorted(delta.items())
        },
    }


def rss_mb(pid: int) -> float | None:
    """The process's resident set (MB) now, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


@asynccontextmanager
async def synapse_server(label: str) -> AsyncIterator[BenchServer]:
    """The ``matrix-synapse`` test dependency on loopback (its default SQLite database), with
    open registration, rate limits lifted and bcrypt at its floor, as ours is configured."""
    # Imported here: only the suites that compare with Synapse need the test harness.
    from tests.federation.synapse_harness import SynapseServer

    with tempfile.TemporaryDirectory(prefix=f"bench-{label}-synapse-") as tmp:
        synapse = SynapseServer(
            Path(tmp) / "synapse",
            {
                "enable_registration": True,
                "enable_registration_without_verification": True,
                "bcrypt_rounds": 4,
            },
        )
        await asyncio.to_thread(synapse.start)
        try:
            assert synapse.process is not None
            yield BenchServer(synapse.client_url, synapse.process.pid)
        finally:
            await asyncio.to_thread(synapse.stop)


@asynccontextmanager
async def profiled(server: BenchServer, output: Path | None) -> AsyncIterator[None]:
    """With ``output``: py-spy samples the server (200 Hz, all threads, without pausing it)
    while the block runs, written as collapsed stacks (``-f raw``: one line per stack and its
    count, for flamegraph.pl, speedscope or a script). docs/performance.md reads them."""
    if output is None:
        yield
        return
    py_spy = Path(sys.executable).with_name("py-spy")
    output.parent.mkdir(parents=True, exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        str(py_spy),
        "record",
        "--pid",
        str(server.pid),
        "--rate",
        "200",
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        str(output),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await asyncio.sleep(0.5)  # attached before the first request
        yield
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        await process.wait()
