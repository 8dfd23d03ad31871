"""``scripts/bench create``: createRoom latency and throughput of a real ``homeserver run``
process on each engine, measured by the shared room-lifecycle client
(``../shared/bench/bench_rooms.py``, public client API only, so any homeserver is measured the
same way).

Per engine: a fresh data directory (SQLite) or a fresh PostgreSQL database (dropped after), a
generated config with the rate limits lifted (the benchmark measures work, not throttling), the
server started, then the client's ``create`` (sequential) and ``throughput`` (concurrent)
phases. The client samples the server's CPU time and RSS from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from benchmarks._common import parse_engines, postgres_unreachable

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_CLIENT = REPO_ROOT.parent / "shared" / "bench" / "bench_rooms.py"
UNLIMITED = {"per_second": 100000, "burst_count": 100000}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engines", default="sqlite,postgres", type=parse_engines)
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get(
            "HOMESERVER_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--concurrent", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--room-version", default=None)
    parser.add_argument("--client", type=Path, default=BENCH_CLIENT)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _write_config(workdir: Path, port: int, database: dict[str, Any]) -> Path:
    config_path = workdir / "homeserver.yaml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "homeserver",
            "generate-config",
            "--server-name",
            "bench.test",
            "--config-path",
            str(config_path),
            "--data-dir",
            str(workdir / "data"),
            "--http-port",
            str(port),
        ],
        env=_env(),
        check=True,
        capture_output=True,
        timeout=60,
    )
    config = yaml.safe_load(config_path.read_text())
    config.update(
        {
            "database": database,
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "rc_room_creation": UNLIMITED,
            "rc_message": UNLIMITED,
            "rc_registration": UNLIMITED,
            "rc_login": UNLIMITED,
            "rc_joins": {"local": UNLIMITED, "remote": UNLIMITED},
        }
    )
    config_path.write_text(yaml.safe_dump(config))
    return config_path


async def _wait_for_health(base_url: str, process: subprocess.Popen[bytes]) -> None:
    import aiohttp

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


async def _measure(args: argparse.Namespace, engine: str) -> dict[str, Any]:
    port = _free_port()
    database_name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = None
    with tempfile.TemporaryDirectory(prefix=f"bench-create-{engine}-") as tmp:
        workdir = Path(tmp)
        if engine == "sqlite":
            database: dict[str, Any] = {
                "name": "sqlite3",
                "args": {"database": str(workdir / "bench.db")},
            }
        else:
            admin = await asyncpg.connect(args.postgres_dsn)
            await admin.execute(f'CREATE DATABASE "{database_name}"')
            dsn = args.postgres_dsn.rsplit("/", 1)[0] + "/" + database_name
            database = {"name": "psycopg2", "args": {"dsn": dsn, "cp_min": 5, "cp_max": 10}}
        config_path = _write_config(workdir, port, database)
        log = (workdir / "server.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "homeserver", "run", "--config-path", str(config_path)],
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            await _wait_for_health(base_url, process)
            command = [
                sys.executable,
                str(args.client),
                "--base-url",
                base_url,
                "--server-pid",
                str(process.pid),
                "--phases",
                "create,throughput",
                "--n-sequential",
                str(args.sequential),
                "--n-concurrent",
                str(args.concurrent),
                "--concurrency",
                str(args.concurrency),
            ]
            if args.room_version:
                command += ["--room-version", args.room_version]
            client = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            stdout, stderr = await client.communicate()
            if not stdout.strip():
                return {"engine": engine, "error": stderr.decode(errors="replace")[-2000:]}
            result: dict[str, Any] = json.loads(stdout)
            return {"engine": engine, **result}
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


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        args.sequential, args.concurrent = 20, 40
    results: dict[str, Any] = {}
    for engine in args.engines:
        if engine == "postgres":
            reason = await postgres_unreachable(args.postgres_dsn)
            if reason:
                results[engine] = {"skipped": reason}
                continue
        results[engine] = await _measure(args, engine)
    summary = {}
    for engine, result in results.items():
        phases = result.get("results", {})
        sequential = phases.get("create_sequential", {})
        concurrent = phases.get("create_concurrent", {})
        summary[engine] = {
            "sequential_median_ms": sequential.get("median_ms"),
            "sequential_p95_ms": sequential.get("p95_ms"),
            "concurrent_rooms_per_s": concurrent.get("rooms_per_s"),
            "server_rss_mb_end": result.get("resources", {})
            .get("create_concurrent", {})
            .get("server_rss_mb_end"),
        }
    return {
        "parameters": {
            "sequential": args.sequential,
            "concurrent": args.concurrent,
            "concurrency": args.concurrency,
            "room_version": args.room_version,
        },
        "summary": summary,
        "engines": results,
    }
