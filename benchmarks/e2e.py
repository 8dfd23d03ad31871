"""``scripts/bench e2e``: the end-to-end-encryption endpoints over HTTP, for our server on each
engine and for a real Synapse (its default SQLite), all on this machine.

Each target is a fresh server (ours: ``tests/federation/interop_peer.OurServer``; Synapse:
``tests/federation/synapse_harness.SynapseServer`` with ``bcrypt_rounds: 4`` so that registering
the users is not most of the run — registration is set-up, never timed). ``--users`` users are
registered through the shared-secret admin API, each with one device whose keys come from a
real Olm account (vodozemac), then, one part after the other:

* ``upload`` — each device's first ``POST /keys/upload``: its signed device keys and
  ``--otks`` signed one-time keys, one request after the other (bodies built and signed before
  the clock starts).
* ``upload_top_up`` — ``--otks`` more signed one-time keys per device (no device keys, as a
  client's top-up), ``--concurrency`` requests in flight: throughput under load.
* ``claim`` — ``--claims`` sequential ``POST /keys/claim`` requests, each claiming one
  ``signed_curve25519`` key from every one of ``--claim-users`` devices; every answer must hold
  a key for every device (``claims_per_second`` counts keys, ``requests_per_second`` requests).
* ``query`` — ``--queries`` sequential ``POST /keys/query`` for all ``--users`` users (a room's
  worth of members); every answer must hold every user's device.
* ``to_device_latency`` — ``--messages`` times: B's long-polling ``/sync`` is parked, then A's
  ``PUT /sendToDevice`` of an Olm-shaped ``m.room.encrypted`` to B's device; timed from the PUT
  until B's /sync answer holding it is in hand (the PUT's own time is reported too).
* ``to_device_throughput`` — ``--throughput-messages`` PUTs from A to B's device with
  ``--concurrency`` in flight; then B syncs until every one arrived (``delivered`` must equal
  ``sent``).
* ``to_device_fanout`` — ``--messages`` PUTs from A each addressing one device of each of
  ``--claim-users`` users (a Megolm room-key share to a small room): PUT latency.

Latencies: median, p95 (nearest rank), min, max in milliseconds. A target whose run fails
reports ``{"error": …}`` so the others still produce figures. ``summary`` gathers the headline
figures per target; ``ratio`` divides ours by Synapse's (rates above 1 and latencies below 1
mean ours is better). Every machine-load figure is the 1-minute load average: the benchmark
shares its cores with whatever else runs.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from benchmarks._common import measure_engines, parse_engines, rate
from benchmarks._e2e_client import MARK, SIGNED_CURVE25519, E2EClient, encrypted_content
from benchmarks.federation import latency, our_server
from tests.federation.synapse_harness import SynapseServer

ENCRYPTED = "m.room.encrypted"
#: How long B's /sync is given to reach its long-poll wait before A sends (the latency part
#: measures delivery to a waiting client, not a sync that happens to start late).
PARK_SECONDS = 0.05
#: A generous bound on any wait for delivery (a failure, not a measurement, if exceeded).
WAIT_SECONDS = 60.0
#: Synapse hashes passwords with bcrypt at 12 rounds by default (~0.3 s each here); set-up only.
SYNAPSE_BCRYPT_ROUNDS = 4

DEFAULTS = {
    "users": 50,
    "otks": 50,
    "claim_users": 20,
    "claims": 50,
    "queries": 100,
    "messages": 100,
    "throughput_messages": 400,
}
QUICK = {
    "users": 4,
    "otks": 5,
    "claim_users": 3,
    "claims": 3,
    "queries": 5,
    "messages": 5,
    "throughput_messages": 20,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engines", default="sqlite,postgres", type=parse_engines)
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get(
            "HOMESERVER_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument(
        "--no-synapse", action="store_true", help="measure our server only (no Synapse run)"
    )
    for name, default in DEFAULTS.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(
            flag, type=int, default=None, help=f"default {default} (quick {QUICK[name]})"
        )
    parser.add_argument("--concurrency", type=int, default=8)


def sizes(args: argparse.Namespace) -> dict[str, int]:
    """The counts of this run: explicit options, else the quick or the default ones; claims
    never exceed the keys each device holds, nor claimed devices the other users."""
    base = QUICK if args.quick else DEFAULTS
    chosen = {name: getattr(args, name) or base[name] for name in DEFAULTS}
    if chosen["users"] < 2:
        raise SystemExit("--users must be at least 2 (a sender and a recipient)")
    chosen["claim_users"] = min(chosen["claim_users"], chosen["users"] - 1)
    chosen["claims"] = min(chosen["claims"], 2 * chosen["otks"])
    chosen["concurrency"] = max(1, args.concurrency)
    return chosen


def load() -> float:
    return round(os.getloadavg()[0], 2)


async def _timed(
    calls: Sequence[Callable[[], Awaitable[Any]]], concurrency: int
) -> tuple[list[float], float, list[Any]]:
    """Run ``calls`` with ``concurrency`` in flight; each call's seconds, the total seconds,
    and the answers in order."""
    gate = asyncio.Semaphore(concurrency)
    durations = [0.0] * len(calls)
    answers: list[Any] = [None] * len(calls)

    async def one(index: int) -> None:
        async with gate:
            start = time.perf_counter()
            answers[index] = await calls[index]()
            durations[index] = time.perf_counter() - start

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(len(calls))))
    return durations, time.perf_counter() - began, answers


def _figures(durations: list[float], elapsed: float, unit: str, count: int) -> dict[str, Any]:
    return {
        "requests": len(durations),
        "seconds": round(elapsed, 3),
        f"{unit}_per_second": rate(count, elapsed),
        "latency": latency(durations),
    }


async def upload(users: list[E2EClient], n: dict[str, int]) -> dict[str, Any]:
    bodies = [u.keys.upload_body(n["otks"], with_device_keys=True) for u in users]
    calls = [lambda u=u, b=b: u.upload_keys(b) for u, b in zip(users, bodies, strict=True)]
    durations, elapsed, counts = await _timed(calls, 1)
    wrong = [c for c in counts if c.get(SIGNED_CURVE25519) != n["otks"]]
    if wrong:
        raise RuntimeError(f"upload: unexpected one_time_key_counts {wrong[0]}")
    return {
        "one_time_keys_per_upload": n["otks"],
        **_figures(durations, elapsed, "uploads", len(calls)),
    }


async def upload_top_up(users: list[E2EClient], n: dict[str, int]) -> dict[str, Any]:
    bodies = [u.keys.upload_body(n["otks"], with_device_keys=False) for u in users]
    calls = [lambda u=u, b=b: u.upload_keys(b) for u, b in zip(users, bodies, strict=True)]
    durations, elapsed, counts = await _timed(calls, n["concurrency"])
    wrong = [c for c in counts if c.get(SIGNED_CURVE25519) != 2 * n["otks"]]
    if wrong:
        raise RuntimeError(f"top-up: unexpected one_time_key_counts {wrong[0]}")
    return {
        "one_time_keys_per_upload": n["otks"],
        "concurrency": n["concurrency"],
        **_figures(durations, elapsed, "uploads", len(calls)),
    }


async def claim(claimer: E2EClient, targets: list[E2EClient], n: dict[str, int]) -> dict[str, Any]:
    body = {
        "one_time_keys": {t.user_id: {t.device_id: SIGNED_CURVE25519} for t in targets},
        "timeout": 10_000,
    }
    calls = [lambda: claimer.request("POST", "/keys/claim", body) for _ in range(n["claims"])]
    durations, elapsed, answers = await _timed(calls, 1)
    claimed_ids: set[str] = set()
    for answer in answers:
        keys = answer.get("one_time_keys", {})
        for t in targets:
            got = keys.get(t.user_id, {}).get(t.device_id, {})
            if len(got) != 1:
                raise RuntimeError(f"claim: {t.user_id} answered {got!r}")
            claimed_ids.update(f"{t.user_id}|{key_id}" for key_id in got)
    claimed = len(durations) * len(targets)
    if len(claimed_ids) != claimed:
        raise RuntimeError(f"claim: {claimed} keys claimed but only {len(claimed_ids)} distinct")
    figures = _figures(durations, elapsed, "claims", claimed)
    figures["requests_per_second"] = rate(len(durations), elapsed)
    return {"devices_per_request": len(targets), **figures}


async def query(querier: E2EClient, users: list[E2EClient], n: dict[str, int]) -> dict[str, Any]:
    body = {"device_keys": {u.user_id: [] for u in users}, "timeout": 10_000}
    calls = [lambda: querier.request("POST", "/keys/query", body) for _ in range(n["queries"])]
    durations, elapsed, answers = await _timed(calls, 1)
    for answer in answers:
        found = answer.get("device_keys", {})
        missing = [u.user_id for u in users if u.device_id not in found.get(u.user_id, {})]
        if missing:
            raise RuntimeError(f"query: no device keys for {missing[:3]}")
    return {"users_per_query": len(users), **_figures(durations, elapsed, "queries", len(calls))}


def _to(recipient: E2EClient, content: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {recipient.user_id: {recipient.device_id: content}}


async def to_device_latency(a: E2EClient, b: E2EClient, n: dict[str, int]) -> dict[str, Any]:
    await b.drain_to_device()
    delivered, put_durations = [], []
    for seq in range(n["messages"]):
        content = encrypted_content(a.keys.curve25519, b.keys.curve25519, seq)
        waiter = asyncio.create_task(b.wait_for_mark(seq, WAIT_SECONDS))
        await asyncio.sleep(PARK_SECONDS)
        if waiter.done():  # a /sync that returned early, e.g. an error: surface it
            await waiter
        start = time.perf_counter()
        await a.send_to_device(ENCRYPTED, f"lat-{seq}-{time.time_ns()}", _to(b, content))
        put_durations.append(time.perf_counter() - start)
        delivered.append(await waiter - start)
    return {
        "messages": len(delivered),
        "send_to_sync": latency(delivered),
        "put": latency(put_durations),
    }


async def to_device_throughput(a: E2EClient, b: E2EClient, n: dict[str, int]) -> dict[str, Any]:
    await b.drain_to_device()
    total = n["throughput_messages"]
    first = 1_000_000  # marks of this part, apart from the latency part's
    contents = [
        encrypted_content(a.keys.curve25519, b.keys.curve25519, first + i) for i in range(total)
    ]
    calls = [
        lambda i=i: a.send_to_device(ENCRYPTED, f"tp-{i}-{time.time_ns()}", _to(b, contents[i]))
        for i in range(total)
    ]
    durations, elapsed, _ = await _timed(calls, n["concurrency"])
    began = time.perf_counter()
    seen = await b.collect_marks(total, WAIT_SECONDS)
    drain = time.perf_counter() - began
    figures = _figures(durations, elapsed, "messages", total)
    return {
        "concurrency": n["concurrency"],
        "sent": total,
        "delivered": len({m for m in seen if m >= first}),
        **figures,
        "recipient_drain_seconds": round(drain, 3),
    }


async def to_device_fanout(
    a: E2EClient, recipients: list[E2EClient], n: dict[str, int]
) -> dict[str, Any]:
    calls = []
    for seq in range(n["messages"]):
        messages = {
            r.user_id: {r.device_id: encrypted_content(a.keys.curve25519, r.keys.curve25519, seq)}
            for r in recipients
        }
        calls.append(
            lambda seq=seq, m=messages: a.send_to_device(
                ENCRYPTED, f"fan-{seq}-{time.time_ns()}", m
            )
        )
    durations, elapsed, _ = await _timed(calls, 1)
    return {
        "devices_per_request": len(recipients),
        **_figures(durations, elapsed, "messages", len(calls) * len(recipients)),
    }


async def measure_target(base_url: str, secret: str, n: dict[str, int]) -> dict[str, Any]:
    """Every part against the server at ``base_url`` (registration through ``secret``)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        gate = asyncio.Semaphore(4)

        async def register(i: int) -> E2EClient:
            async with gate:
                return await E2EClient.register(session, base_url, secret, f"e2e{i:03d}")

        registration = time.perf_counter()
        users = list(await asyncio.gather(*(register(i) for i in range(n["users"]))))
        registration = time.perf_counter() - registration
        a, b = users[0], users[1]
        others = users[1 : 1 + n["claim_users"]]
        result: dict[str, Any] = {
            "setup_registration_seconds": round(registration, 2),
            "load_before": load(),
        }
        result["upload"] = await upload(users, n)
        result["upload_top_up"] = await upload_top_up(users, n)
        result["claim"] = await claim(a, others, n)
        result["query"] = await query(a, users, n)
        result["to_device_latency"] = await to_device_latency(a, b, n)
        result["to_device_throughput"] = await to_device_throughput(a, b, n)
        result["to_device_fanout"] = await to_device_fanout(a, others, n)
        result["load_after"] = load()
        return result


async def _guarded(
    function: Callable[[Path], Awaitable[dict[str, Any]]], label: str
) -> dict[str, Any]:
    """``function(workdir)`` in a temporary directory; a failure becomes ``{"error": …}``."""
    with tempfile.TemporaryDirectory(prefix=f"bench-e2e-{label}-") as tmp:
        try:
            return await function(Path(tmp))
        except Exception as e:
            return {"error": f"{type(e).__name__}: {e}"[:2000]}


async def measure_ours(args: argparse.Namespace, engine: str) -> dict[str, Any]:
    n = sizes(args)

    async def run_it(workdir: Path) -> dict[str, Any]:
        async with our_server(workdir, engine) as ours:
            figures = await measure_target(ours.client_url, ours.registration_secret, n)
            log = ours.log()
        # A traceback in the log means some request hit a bug, whatever the figures say.
        figures["server_tracebacks"] = log.count("Traceback")
        return figures

    return {"engine": engine, **await _guarded(run_it, engine)}


async def measure_synapse(args: argparse.Namespace) -> dict[str, Any]:
    n = sizes(args)

    async def run_it(workdir: Path) -> dict[str, Any]:
        synapse = SynapseServer(workdir / "synapse")
        config = yaml.safe_load(synapse.config_path.read_text())
        config["bcrypt_rounds"] = SYNAPSE_BCRYPT_ROUNDS
        synapse.config_path.write_text(yaml.safe_dump(config))
        started = synapse.start()
        try:
            figures = await measure_target(synapse.client_url, synapse.registration_secret, n)
        finally:
            synapse.stop()
        figures["synapse_start_seconds"] = round(started, 2)
        figures["server_errors_logged"] = len(synapse.errors_in_log())
        return figures

    return {
        "version": importlib.metadata.version("matrix-synapse"),
        "database": "sqlite3",
        **await _guarded(run_it, "synapse"),
    }


#: Headline figures: (summary name, part, path inside the part's figures).
HEADLINES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("upload_median_ms", "upload", ("latency", "median_ms")),
    ("upload_p95_ms", "upload", ("latency", "p95_ms")),
    ("uploads_per_s", "upload", ("uploads_per_second",)),
    ("top_up_uploads_per_s_concurrent", "upload_top_up", ("uploads_per_second",)),
    ("claim_median_ms", "claim", ("latency", "median_ms")),
    ("claim_p95_ms", "claim", ("latency", "p95_ms")),
    ("claims_per_s", "claim", ("claims_per_second",)),
    ("query_median_ms", "query", ("latency", "median_ms")),
    ("query_p95_ms", "query", ("latency", "p95_ms")),
    ("to_device_median_ms", "to_device_latency", ("send_to_sync", "median_ms")),
    ("to_device_p95_ms", "to_device_latency", ("send_to_sync", "p95_ms")),
    ("to_device_msgs_per_s", "to_device_throughput", ("messages_per_second",)),
    ("fanout_put_median_ms", "to_device_fanout", ("latency", "median_ms")),
)
#: Headlines where a bigger number is better (their ratio reads "ours is N times faster").
RATES = {name for name, _, _ in HEADLINES if "per_s" in name}


def headline(figures: dict[str, Any]) -> dict[str, Any]:
    if "error" in figures or "skipped" in figures:
        return {"error": figures.get("error") or figures.get("skipped")}
    out: dict[str, Any] = {}
    for name, part, path in HEADLINES:
        value: Any = figures.get(part, {})
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        out[name] = value
    return out


def ratios(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    theirs = summary.get("synapse")
    result: dict[str, dict[str, float]] = {}
    if theirs is None or "error" in theirs:
        return result
    for target, ours in summary.items():
        if target == "synapse" or "error" in ours:
            continue
        result[target] = {
            name: float(f"{ours[name] / max(theirs[name], 1e-9):.3g}")
            for name in ours
            if isinstance(ours[name], int | float) and isinstance(theirs.get(name), int | float)
        }
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    n = sizes(args)
    engines = await measure_engines(args, measure_ours)
    result: dict[str, Any] = {"parameters": n, "engines": engines}
    summary = {f"ours_{engine}": headline(figures) for engine, figures in engines.items()}
    if not args.no_synapse:
        result["synapse"] = await measure_synapse(args)
        summary["synapse"] = headline(result["synapse"])
    result["summary"] = summary
    result["ratio"] = ratios(summary)
    result["notes"] = {
        "ratio": "ours / Synapse: above 1 is better for *_per_s, below 1 for *_ms",
        "marks": f"to-device contents carry {MARK!r} to tell the benchmark's messages apart",
    }
    return result
