"""``scripts/bench create``: createRoom latency and throughput of a real ``homeserver run``
process on each engine, and of Synapse beside it, measured by the shared room-lifecycle client
(``../shared/bench/bench_rooms.py``, public client API only, so any homeserver is measured the
same way).

Per engine: a fresh data directory (SQLite) or a fresh PostgreSQL database (dropped after), a
generated config with the rate limits lifted (the benchmark measures work, not throttling), the
server started, then the client's ``create`` (sequential) and ``throughput`` (concurrent)
phases, each as a run of its own so the server's transaction statistics (metrics) can be read
around it. Reported per phase: latency, rooms/s, the server's CPU time per room (utime + stime
from /proc, sampled by the client), SQL statements and transaction time per room (all
transactions, and by name), and with ``--rss-rooms`` the server's RSS once that many rooms
exist. ``--synapse`` (default on) runs the same two phases against the ``matrix-synapse`` test
dependency (its SQLite database, registration open, rate limits lifted) and reports our figures
over its as ``ratio``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from benchmarks._common import measure_engines, parse_engines
from benchmarks._server import (
    BENCH_CLIENT,
    BenchServer,
    bench_server,
    per_operation,
    profiled,
    rss_mb,
    run_client,
    stats_delta,
    synapse_server,
    transaction_stats,
)

#: unmeasured createRoom calls the client makes before each phase (counted as operations in
#: the statement figures, which cover everything the server did during the run).
WARMUP = 5


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
    parser.add_argument(
        "--rss-rooms",
        type=int,
        default=10000,
        help="create rooms until this many exist, then read the server's RSS (0: skip)",
    )
    parser.add_argument(
        "--synapse",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure Synapse (the matrix-synapse test dependency) in the same run",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="py-spy our server during the run; collapsed stacks to PROFILE-<engine>.txt",
    )
    parser.add_argument("--client", type=Path, default=BENCH_CLIENT)


def _phase_arguments(args: argparse.Namespace, phase: str, rooms: int) -> list[str]:
    arguments = [
        "--phases",
        phase,
        "--n-sequential",
        str(rooms),
        "--n-concurrent",
        str(rooms),
        "--concurrency",
        str(args.concurrency),
        "--warmup",
        str(WARMUP),
        # The client registers max(concurrency, members) users first; 1 keeps that to a few.
        "--members",
        "1",
    ]
    if args.room_version:
        arguments += ["--room-version", args.room_version]
    return arguments


async def _phase(
    args: argparse.Namespace, server: BenchServer, phase: str, key: str, rooms: int
) -> dict[str, Any]:
    """One client run of ``phase`` (``create`` or ``throughput``) creating ``rooms`` rooms."""
    before = await transaction_stats(server)
    result = await run_client(args.client, server, _phase_arguments(args, phase, rooms))
    after = await transaction_stats(server)
    if "error" in result:
        return {"error": result["error"], "client": result}
    figures: dict[str, Any] = dict(result.get("results", {}).get(key, {}))
    resources = result.get("resources", {}).get(key, {})
    cpu = resources.get("server_cpu_s")
    figures["server_cpu_ms_per_room"] = None if cpu is None else round(cpu * 1000 / rooms, 3)
    figures["server_cpu_util"] = resources.get("server_cpu_util")
    client_cpu = resources.get("client_cpu_s")
    figures["client_cpu_ms_per_room"] = (
        None if client_cpu is None else round(client_cpu * 1000 / rooms, 3)
    )
    figures["machine_other_cpu_s"] = resources.get("other_cpu_s")
    figures["server_rss_mb_end"] = resources.get("server_rss_mb_end")
    if server.metrics_url is not None:
        # Statements of everything the run made the server do: the client's few registrations
        # and warm-up rooms included (operations = rooms + warm-up).
        figures["database"] = per_operation(stats_delta(before, after), rooms + WARMUP)
    return figures


async def _measure_server(args: argparse.Namespace, server: BenchServer) -> dict[str, Any]:
    sequential = await _phase(args, server, "create", "create_sequential", args.sequential)
    concurrent = await _phase(args, server, "throughput", "create_concurrent", args.concurrent)
    figures: dict[str, Any] = {"create_sequential": sequential, "create_concurrent": concurrent}
    created = args.sequential + args.concurrent + 2 * WARMUP
    if args.rss_rooms > created:
        more = await _phase(
            args, server, "throughput", "create_concurrent", args.rss_rooms - created - WARMUP
        )
        figures["rss_fill"] = {
            "rooms_created": args.rss_rooms,
            "rooms_per_s": more.get("rooms_per_s"),
            "server_rss_mb": rss_mb(server.pid),
        }
    return figures


async def _measure(args: argparse.Namespace, engine: str) -> dict[str, Any]:
    output = None if args.profile is None else Path(f"{args.profile}-{engine}.txt")
    async with (
        bench_server(engine, args.postgres_dsn, "create") as server,
        profiled(server, output),
    ):
        return {"engine": engine, **await _measure_server(args, server)}


def _headline(result: dict[str, Any]) -> dict[str, Any]:
    sequential = result.get("create_sequential", {})
    concurrent = result.get("create_concurrent", {})
    return {
        "sequential_median_ms": sequential.get("median_ms"),
        "sequential_p95_ms": sequential.get("p95_ms"),
        "sequential_server_cpu_ms_per_room": sequential.get("server_cpu_ms_per_room"),
        "sequential_statements_per_room": sequential.get("database", {}).get("statements_per_op"),
        "concurrent_rooms_per_s": concurrent.get("rooms_per_s"),
        "concurrent_median_ms": concurrent.get("median_ms"),
        "concurrent_server_cpu_ms_per_room": concurrent.get("server_cpu_ms_per_room"),
        "concurrent_statements_per_room": concurrent.get("database", {}).get("statements_per_op"),
        "server_rss_mb_end": concurrent.get("server_rss_mb_end"),
        "server_rss_mb_at_rss_rooms": result.get("rss_fill", {}).get("server_rss_mb"),
    }


def _ratio(ours: Any, theirs: Any, *, higher_is_better: bool) -> float | None:
    if not ours or not theirs:
        return None
    return round(ours / theirs if higher_is_better else theirs / ours, 1)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        args.sequential, args.concurrent, args.rss_rooms = 20, 40, 0
    results = await measure_engines(args, _measure)
    summary = {
        engine: _headline(result) for engine, result in results.items() if "skipped" not in result
    }
    if args.synapse:
        synapse_args = argparse.Namespace(**{**vars(args), "rss_rooms": 0})
        async with synapse_server("create") as synapse:
            results["synapse"] = await _measure_server(synapse_args, synapse)
        theirs = _headline(results["synapse"])
        summary["synapse"] = theirs
        for engine in args.engines:
            ours = summary.get(engine)
            if ours is None:
                continue
            # How many times better we are: Synapse's latency over ours, our rate over its.
            ours["times_better_than_synapse"] = {
                "sequential_median": _ratio(
                    ours["sequential_median_ms"],
                    theirs["sequential_median_ms"],
                    higher_is_better=False,
                ),
                "concurrent_rooms_per_s": _ratio(
                    ours["concurrent_rooms_per_s"],
                    theirs["concurrent_rooms_per_s"],
                    higher_is_better=True,
                ),
            }
    return {
        "parameters": {
            "sequential": args.sequential,
            "concurrent": args.concurrent,
            "concurrency": args.concurrency,
            "room_version": args.room_version,
            "rss_rooms": args.rss_rooms,
            "synapse": args.synapse,
        },
        "summary": summary,
        "engines": results,
    }
