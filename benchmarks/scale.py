"""``scripts/bench scale``: one homeserver run as 1, 2 and 3 processes on one PostgreSQL and one
Redis (issue 17), requests spread round-robin over the processes.

Per process count, on a fresh cluster (tests/multiprocess/cluster.py: its own schema, its own
``redis-server``, rate limits lifted):

* ``create_room``: createRooms by ``--concurrency`` users at once;
* ``send_rooms``: messages, each user into a room of its own (unrelated writes);
* ``send_one_room``: messages, every user into one busy room;
* ``wake_up``: a /sync long-poll parked on one process, the message that wakes it sent on
  another (with one process, on the same: the baseline) — from the send's start to the
  long-poll's answer (median, p95);
* for each phase: CPU seconds per operation of each server process and of the PostgreSQL
  backends serving the cluster (``/proc/<pid>/stat`` utime + stime; backends found in
  ``pg_stat_activity`` by the cluster's ``application_name``), and the time spent waiting for
  locks (every ``/_synapse/metrics`` series whose name holds ``lock_wait``, summed over the
  processes: seconds, count, and seconds per operation).

On a 2-core machine throughput cannot grow with processes; what shows is whether anything
serialises unrelated work (lock wait near zero, CPU per operation flat as processes are added).
The ``projection`` lines turn the measured per-operation CPU into the throughput of N processes
on machines of their own until PostgreSQL (given this machine's cores) saturates.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks._common import DEFAULT_POSTGRES_DSN, ms, postgres_unreachable, rate
from tests.http_client import CS, q
from tests.multiprocess.cluster import Cluster, RoundRobin

UNLIMITED = {"per_second": 100000, "burst_count": 100000}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--postgres-dsn", default=DEFAULT_POSTGRES_DSN)
    parser.add_argument(
        "--processes",
        default="1,2,3",
        type=lambda v: [int(n) for n in v.split(",") if n.strip()],
        help="process counts to measure, e.g. 1,2,3",
    )
    parser.add_argument("--rooms", type=int, default=300, help="createRooms per process count")
    parser.add_argument("--messages", type=int, default=1500, help="messages per send phase")
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument("--wake-samples", type=int, default=40)
    parser.add_argument(
        "--postgres-cores",
        type=int,
        default=os.cpu_count() or 1,
        help="cores of the PostgreSQL machine in the projection (default: this machine's)",
    )


# --- CPU and lock-wait sampling ---


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` (None if it is gone or unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # after "pid (comm)": state is field 3, utime 14 and stime 15 (1-based) → indexes 11, 12
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


async def postgres_backends(cluster: Cluster) -> list[int]:
    rows = await cluster.query(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1", cluster.schema
    )
    return [int(row["pid"]) for row in rows]


def _series(name: str, labels: dict[str, str]) -> str:
    """A series' name with its labels, those naming the server or the process left out (the
    figures are summed over the processes)."""
    kept = ",".join(
        f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("server_name", "instance")
    )
    return f"{name}{{{kept}}}" if kept else name


async def lock_wait(cluster: Cluster) -> dict[str, dict[str, float]]:
    """Every lock-wait series summed over the live processes: series → seconds, count."""
    totals: dict[str, dict[str, float]] = {}
    for instance in cluster.instances:
        if not instance.running:
            continue
        for name, samples in (await cluster.metrics(instance.index)).items():
            if "lock_wait" not in name or name.endswith(("_created", "_bucket")):
                continue
            if name.endswith("_count"):
                base, key = name.removesuffix("_count"), "count"
            elif name.endswith("_sum"):
                base, key = name.removesuffix("_sum"), "seconds"
            else:  # a counter or gauge of seconds (or of waits), as named
                base = name.removesuffix("_total")
                key = "seconds" if "second" in name else "count"
            for labels, value in samples:
                figures = totals.setdefault(_series(base, labels), {})
                figures[key] = figures.get(key, 0.0) + value
    return totals


class Sample:
    """CPU of the server processes and of the cluster's PostgreSQL backends, and lock wait,
    taken before and after a phase."""

    def __init__(self, cpu: dict[str, float], backends: dict[int, float], locks: Any) -> None:
        self.cpu = cpu
        self.backends = backends
        self.locks = locks

    @classmethod
    async def take(cls, cluster: Cluster) -> Sample:
        cpu = {}
        for instance in cluster.instances:
            if instance.running and (value := cpu_seconds(instance.pid)) is not None:
                cpu[instance.name] = value
        backends = {}
        for pid in await postgres_backends(cluster):
            if (value := cpu_seconds(pid)) is not None:
                backends[pid] = value
        return cls(cpu, backends, await lock_wait(cluster))


def costs(before: Sample, after: Sample, operations: int) -> dict[str, Any]:
    per_process = {
        name: round((after.cpu[name] - before.cpu.get(name, 0.0)) / operations * 1000, 3)
        for name in after.cpu
    }
    # Backends that lived through the phase (a backend opened during it counts from zero).
    postgres = sum(value - before.backends.get(pid, 0.0) for pid, value in after.backends.items())
    locks: dict[str, Any] = {}
    for name, values in after.locks.items():
        earlier = before.locks.get(name, {})
        seconds = values.get("seconds", 0.0) - earlier.get("seconds", 0.0)
        count = values.get("count", 0.0) - earlier.get("count", 0.0)
        locks[name] = {
            "seconds": round(seconds, 4),
            "count": count,
            "ms_per_operation": round(seconds / operations * 1000, 4),
        }
    return {
        "server_cpu_ms_per_op": per_process,
        "server_cpu_ms_per_op_total": round(sum(per_process.values()), 3),
        "postgres_cpu_ms_per_op": round(postgres / operations * 1000, 3),
        "postgres_backends": len(after.backends),
        "lock_wait": locks,
    }


# --- phases ---


async def _phase(
    cluster: Cluster, count: int, workers: int, operation: Callable[[int, int], Awaitable[None]]
) -> dict[str, Any]:
    """``operation(worker, n)`` ``count`` times over ``workers`` concurrent workers; the rate
    and the per-operation costs."""
    before = await Sample.take(cluster)
    counter = iter(range(count))

    async def worker(index: int) -> None:
        for n in counter:
            await operation(index, n)

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(workers)))
    elapsed = time.perf_counter() - started
    after = await Sample.take(cluster)
    return {"operations": count, "seconds": round(elapsed, 3), "per_s": rate(count, elapsed)} | (
        costs(before, after, count)
    )


async def _wake_up(
    cluster: Cluster, rr: RoundRobin, tokens: list[str], room_id: str, samples: int
) -> dict[str, Any]:
    """Reader long-polls process i; the writer sends on process i+1 (with one process, the
    same one: the baseline the cross-process figures compare with)."""
    reader, writer = tokens[0], tokens[1]
    since: list[str] = []
    for index in range(cluster.size):
        status, body = await rr.call_on(index, "GET", f"{CS}/sync?timeout=0", reader)
        assert status == 200, body
        since.append(body["next_batch"])
    latencies = []
    for n in range(samples):
        poll_on = n % cluster.size
        send_on = (poll_on + 1) % cluster.size
        text = f"wake {n}"

        async def poll(poll_on: int = poll_on, text: str = text) -> float:
            while True:
                path = f"{CS}/sync?timeout=30000&since={q(since[poll_on])}"
                status, body = await rr.call_on(poll_on, "GET", path, reader, timeout=60)
                assert status == 200, body
                since[poll_on] = body["next_batch"]
                room = body.get("rooms", {}).get("join", {}).get(room_id, {})
                events = room.get("timeline", {}).get("events", [])
                if any(e.get("content", {}).get("body") == text for e in events):
                    return time.perf_counter()

        task = asyncio.create_task(poll())
        await asyncio.sleep(0.2)
        sent_at = time.perf_counter()
        path = f"{CS}/rooms/{q(room_id)}/send/m.room.message/wake-{n}"
        status, body = await rr.call_on(
            send_on, "PUT", path, writer, {"msgtype": "m.text", "body": text}
        )
        assert status == 200, body
        latencies.append(await asyncio.wait_for(task, 60) - sent_at)
    ordered = sorted(latencies)
    return {
        "cross_process": cluster.size > 1,
        "samples": samples,
        "median_ms": ms(statistics.median(ordered)),
        "p95_ms": ms(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]),
        "max_ms": ms(ordered[-1]),
    }


async def measure(args: argparse.Namespace, size: int) -> dict[str, Any]:
    extra = {
        "rc_room_creation": UNLIMITED,
        "rc_message": UNLIMITED,
        "rc_registration": UNLIMITED,
        "rc_joins": {"local": UNLIMITED, "remote": UNLIMITED},
    }
    with tempfile.TemporaryDirectory(prefix=f"bench-scale-{size}-") as tmp:
        cluster = Cluster(Path(tmp), size, extra, postgres_dsn=args.postgres_dsn)
        try:
            await cluster.create()
            cluster.start_all()
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
                return await _measure_cluster(args, cluster, RoundRobin(session, cluster.urls))
        finally:
            await cluster.destroy()


async def _measure_cluster(
    args: argparse.Namespace, cluster: Cluster, rr: RoundRobin
) -> dict[str, Any]:
    tokens = [(await rr.register(f"bench{i}"))[1] for i in range(args.concurrency)]

    async def create(worker: int, n: int) -> None:
        await rr.ok("POST", f"{CS}/createRoom", tokens[worker], {"name": f"room {n}"})

    result: dict[str, Any] = {"processes": cluster.size}
    result["create_room"] = await _phase(cluster, args.rooms, args.concurrency, create)

    own_rooms = [
        (await rr.ok("POST", f"{CS}/createRoom", token, {}))["room_id"] for token in tokens
    ]
    busy = (await rr.ok("POST", f"{CS}/createRoom", tokens[0], {"preset": "public_chat"}))[
        "room_id"
    ]
    for token in tokens[1:]:
        await rr.ok("POST", f"{CS}/join/{q(busy)}", token, {})

    def sender(rooms: Callable[[int], str]) -> Callable[[int, int], Awaitable[None]]:
        async def send(worker: int, n: int) -> None:
            path = f"{CS}/rooms/{q(rooms(worker))}/send/m.room.message/m-{time.time_ns()}-{n}"
            await rr.ok("PUT", path, tokens[worker], {"msgtype": "m.text", "body": f"m {n}"})

        return send

    result["send_rooms"] = await _phase(
        cluster, args.messages, args.concurrency, sender(lambda w: own_rooms[w])
    )
    result["send_one_room"] = await _phase(
        cluster, args.messages, args.concurrency, sender(lambda w: busy)
    )
    result["wake_up"] = await _wake_up(cluster, rr, tokens, busy, args.wake_samples)
    result["requests_per_process"] = {cluster.instances[i].name: n for i, n in rr.answered.items()}
    return result


# --- projection ---


def projection(results: list[dict[str, Any]], postgres_cores: int) -> list[str]:
    """From the per-operation CPU of the largest cluster measured: each server process on a
    core of its own serves 1/server-CPU operations a second; PostgreSQL on ``postgres_cores``
    cores saturates at cores/PostgreSQL-CPU. N processes give min(N × the first, the second)."""
    if not results:
        return []
    last = results[-1]
    lines = []
    for phase in ("create_room", "send_rooms", "send_one_room"):
        figures = last.get(phase)
        if not figures:
            continue
        server_ms = figures["server_cpu_ms_per_op_total"]
        postgres_ms = figures["postgres_cpu_ms_per_op"]
        if server_ms <= 0 or postgres_ms <= 0:
            # CPU time is counted in 10 ms ticks: a short phase can read as none at all.
            lines.append(
                f"{phase}: too little CPU measured to project (server {server_ms:.2f} ms,"
                f" PostgreSQL {postgres_ms:.2f} ms per operation); run more operations"
            )
            continue
        per_process = 1000 / server_ms
        ceiling = postgres_cores * 1000 / postgres_ms
        steps = ", ".join(f"{n}: {min(n * per_process, ceiling):.0f}/s" for n in (1, 2, 4, 8, 16))
        lines.append(
            f"{phase}: {server_ms:.2f} ms server CPU + {postgres_ms:.2f} ms PostgreSQL CPU per "
            f"operation → N processes on their own cores {steps}; PostgreSQL "
            f"({postgres_cores} cores) saturates at {ceiling:.0f}/s, reached with "
            f"{ceiling / per_process:.1f} processes"
        )
    return lines


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        args.rooms, args.messages, args.wake_samples = 30, 60, 6
        args.concurrency = min(args.concurrency, 6)
    unreachable = await postgres_unreachable(args.postgres_dsn)
    if unreachable:
        return {"skipped": unreachable}
    results = []
    for size in args.processes:
        results.append(await measure(args, size))
    lines = projection(results, args.postgres_cores)
    for line in lines:
        print(line, file=sys.stderr)
    return {
        "parameters": {
            "processes": args.processes,
            "rooms": args.rooms,
            "messages": args.messages,
            "concurrency": args.concurrency,
            "wake_samples": args.wake_samples,
            "postgres_cores": args.postgres_cores,
        },
        "results": results,
        "projection": lines,
    }
