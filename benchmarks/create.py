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
import os
from pathlib import Path
from typing import Any

from benchmarks._common import measure_engines, parse_engines
from benchmarks._server import BENCH_CLIENT, bench_server, run_client


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


async def _measure(args: argparse.Namespace, engine: str) -> dict[str, Any]:
    async with bench_server(engine, args.postgres_dsn, "create") as server:
        arguments = [
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
            arguments += ["--room-version", args.room_version]
        result = await run_client(args.client, server, arguments)
    return {"engine": engine, **result}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        args.sequential, args.concurrent = 20, 40
    results = await measure_engines(args, _measure)
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
