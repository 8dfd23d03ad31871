"""``scripts/bench upgrade``: room-upgrade latency of a real ``homeserver run`` process on each
engine, measured by the shared room-lifecycle client (``../shared/bench/bench_rooms.py``, public
client API only).

Per engine and per member count M (default 1, 10, 50, 500): ``--upgrade-rooms`` public rooms,
each with M joined local members and ``--extra-state`` extra state events, are upgraded one
after the other; the client times ``POST /rooms/{id}/upgrade`` (our upgrade includes moving
every local member into the new room) and how long a joined member's long-polling /sync takes
to show the tombstone. The client registers max(M) users first (argon2: this takes a while for
500; it is setup, not measured).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from benchmarks._common import measure_engines, parse_engines
from benchmarks._server import BENCH_CLIENT, bench_server, run_client

QUICK_MEMBERS = "1,10"
QUICK_ROOMS = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engines", default="sqlite,postgres", type=parse_engines)
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get(
            "HOMESERVER_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--members", default="1,10,50,500", help="comma list of M")
    parser.add_argument("--extra-state", type=int, default=20)
    parser.add_argument("--upgrade-rooms", type=int, default=10, help="rooms upgraded per M")
    parser.add_argument("--room-version", default=None, help="version of the upgraded rooms")
    parser.add_argument("--new-version", default=None, help="default: the server's default")
    parser.add_argument("--upgrade-preset", default="public_chat")
    parser.add_argument("--register-concurrency", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8, help="joins in flight in setup")
    parser.add_argument("--client", type=Path, default=BENCH_CLIENT)


def _client_arguments(args: argparse.Namespace) -> list[str]:
    arguments = [
        "--phases",
        "upgrade",
        "--members",
        args.members,
        "--extra-state",
        str(args.extra_state),
        "--upgrade-rooms",
        str(args.upgrade_rooms),
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
    async with bench_server(engine, args.postgres_dsn, "upgrade") as server:
        result = await run_client(args.client, server, _client_arguments(args))
    return {"engine": engine, **result}


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
        summary[key] = {
            "upgrades": upgrade.get("n"),
            "upgrade_median_ms": upgrade.get("median_ms"),
            "upgrade_p95_ms": upgrade.get("p95_ms"),
            "tombstone_seen_median_ms": seen.get("median_ms"),
            "tombstone_seen_p95_ms": seen.get("p95_ms"),
            "tombstone_seen_after_response_median_ms": after_response.get("median_ms"),
            "room_setup_median_ms": phase.get("room_setup", {}).get("median_ms"),
            "server_cpu_s": resources.get("server_cpu_s"),
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
            "members": [int(m) for m in args.members.split(",") if m.strip()],
            "extra_state": args.extra_state,
            "upgrade_rooms": args.upgrade_rooms,
            "room_version": args.room_version,
            "new_version": args.new_version,
            "upgrade_preset": args.upgrade_preset,
        },
        "summary": {
            engine: _summarise(result, args.room_version) for engine, result in results.items()
        },
        "engines": results,
    }
