"""``scripts/bench upgrade``: room-upgrade latency of a real ``homeserver run`` process on each
engine, measured by the shared room-lifecycle client (``../shared/bench/bench_rooms.py``, public
client API only).

Per engine and per member count M (default 1, 50, 2000, 10000): ``--upgrade-rooms`` public
rooms (``--big-upgrade-rooms`` when M > 500), each with M joined local members and
``--extra-state`` extra state events, are upgraded one after the other; the client times
``POST /rooms/{id}/upgrade`` (our upgrade includes moving every local member into the new room)
and how long a joined member's long-polling /sync takes to show the tombstone. Each M is a
client run of its own: it registers M users through the real ``/register`` (the bench server
hashes passwords at argon2's floor, ``password_hashing``, so 10,000 take seconds) and joins
them through the real ``/join`` (setup, timed but not the measured figure). Reported per M
besides latency: the server's CPU time per upgrade (from /proc) and the ``upgrade_room``
transaction's statements and duration (from the server's metrics).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from benchmarks._common import measure_engines, parse_engines
from benchmarks._server import (
    BENCH_CLIENT,
    bench_server,
    profiled,
    run_client,
    stats_delta,
    transaction_stats,
)

QUICK_MEMBERS = "1,10"
#: above this many members a room takes minutes to fill: fewer rooms are upgraded.
BIG_ROOM = 500
QUICK_ROOMS = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engines", default="sqlite,postgres", type=parse_engines)
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get(
            "HOMESERVER_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--members", default="1,50,2000,10000", help="comma list of M")
    parser.add_argument("--extra-state", type=int, default=20)
    parser.add_argument("--upgrade-rooms", type=int, default=10, help="rooms upgraded per M")
    parser.add_argument(
        "--big-upgrade-rooms", type=int, default=3, help=f"rooms upgraded per M > {BIG_ROOM}"
    )
    parser.add_argument("--room-version", default=None, help="version of the upgraded rooms")
    parser.add_argument("--new-version", default=None, help="default: the server's default")
    parser.add_argument("--upgrade-preset", default="public_chat")
    parser.add_argument("--register-concurrency", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=8, help="joins in flight in setup")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="py-spy our server during the run; collapsed stacks to PROFILE-<engine>.txt",
    )
    parser.add_argument("--client", type=Path, default=BENCH_CLIENT)


def _client_arguments(args: argparse.Namespace, members: int) -> list[str]:
    rooms = args.upgrade_rooms if members <= BIG_ROOM else args.big_upgrade_rooms
    arguments = [
        "--phases",
        "upgrade",
        "--members",
        str(members),
        "--warmup",
        "0",
        "--extra-state",
        str(args.extra_state),
        "--upgrade-rooms",
        str(rooms),
        "--upgrade-preset",
        args.upgrade_preset,
        "--register-concurrency",
        str(args.register_concurrency),
        "--concurrency",
        str(args.concurrency),
    ]
    if args.room_version:
        arguments += ["--room-version", args.room_version]
    if args.new_version:
        arguments += ["--new-version", args.new_version]
    return arguments


async def _measure(args: argparse.Namespace, engine: str) -> dict[str, Any]:
    """One server per engine; one client run per member count, merged."""
    merged: dict[str, Any] = {"engine": engine, "results": {"upgrade": {}}, "resources": {}}
    output = None if args.profile is None else Path(f"{args.profile}-{engine}.txt")
    async with (
        bench_server(engine, args.postgres_dsn, "upgrade") as server,
        profiled(server, output),
    ):
        for members in _member_counts(args):
            before = await transaction_stats(server)
            result = await run_client(args.client, server, _client_arguments(args, members))
            delta = stats_delta(before, await transaction_stats(server))
            for key in ("server_default_room_version", "upgrade_new_version"):
                if key in result:
                    merged[key] = result[key]
            merged["resources"].update(result.get("resources", {}))
            phase = result.get("results", {}).get("upgrade", {}).get(f"M={members}")
            if phase is not None:
                upgrade = delta.get("upgrade_room", {})
                count = upgrade.get("count") or 0
                phase["upgrade_transaction"] = {
                    "count": count,
                    "statements_each": round(upgrade.get("statements", 0) / count, 1)
                    if count
                    else None,
                    "ms_each": round(upgrade.get("seconds", 0) * 1000 / count, 2)
                    if count
                    else None,
                }
                merged["results"]["upgrade"][f"M={members}"] = phase
            if "error" in result:
                merged["error"] = result["error"]
                break
    return merged


def _member_counts(args: argparse.Namespace) -> list[int]:
    return sorted({int(m) for m in args.members.split(",") if m.strip()})


def _summarise(result: dict[str, Any], room_version: str | None) -> dict[str, Any]:
    """Per member count: upgrade latency and time until the tombstone is seen via /sync."""
    summary: dict[str, Any] = {
        "room_version": room_version or result.get("server_default_room_version"),
        "new_version": result.get("upgrade_new_version"),
    }
    for key, phase in result.get("results", {}).get("upgrade", {}).items():
        upgrade = phase.get("upgrade", {})
        seen = phase.get("tombstone_seen_via_sync_from_request_start", {})
        after_response = phase.get("tombstone_seen_via_sync_from_response", {})
        resources = result.get("resources", {}).get(f"upgrade_{key.replace('=', '')}", {})
        cpu = resources.get("server_cpu_s")
        transaction = phase.get("upgrade_transaction", {})
        summary[key] = {
            "upgrades": upgrade.get("n"),
            "upgrade_median_ms": upgrade.get("median_ms"),
            "upgrade_p95_ms": upgrade.get("p95_ms"),
            "tombstone_seen_median_ms": seen.get("median_ms"),
            "tombstone_seen_p95_ms": seen.get("p95_ms"),
            "tombstone_seen_after_response_median_ms": after_response.get("median_ms"),
            "room_setup_median_ms": phase.get("room_setup", {}).get("median_ms"),
            "server_cpu_s": cpu,
            "server_cpu_ms_per_upgrade": round(cpu * 1000 / upgrade["n"], 1)
            if cpu is not None and upgrade.get("n")
            else None,
            "upgrade_transaction_statements": transaction.get("statements_each"),
            "upgrade_transaction_ms": transaction.get("ms_each"),
        }
    if "error" in result:
        summary["error"] = result["error"]
    return summary


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        args.members, args.upgrade_rooms = QUICK_MEMBERS, QUICK_ROOMS
    results = await measure_engines(args, _measure)
    return {
        "parameters": {
            "members": _member_counts(args),
            "extra_state": args.extra_state,
            "upgrade_rooms": args.upgrade_rooms,
            "big_upgrade_rooms": args.big_upgrade_rooms,
            "room_version": args.room_version,
            "new_version": args.new_version,
            "upgrade_preset": args.upgrade_preset,
        },
        "summary": {
            engine: _summarise(result, args.room_version) for engine, result in results.items()
        },
        "engines": results,
    }
