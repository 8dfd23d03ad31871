"""``scripts/bench federation``: federation throughput and delivery latency, per engine.

* ``inbound`` — PDUs our server accepts per second from a transaction stream: a fake remote
  server (its own key, HTTPS on loopback) joins a public room on a real ``homeserver run`` process
  through ``make_join`` / ``v2/send_join``, then PUTs ``/send`` transactions of
  ``--per-transaction`` (50) signed message PDUs, each chained to the one before by
  ``prev_events``. The transactions are built and signed before the clock starts; one warm-up
  transaction first (it also makes our server fetch the remote's key). Every PDU must come back
  accepted, else the run reports the refusal instead of a rate.
* ``peer`` — against a real Synapse on loopback (``tests/federation/synapse_harness.py``): the time
  from our user's send to the Synapse user's /sync showing the message (``--runs`` samples), and
  from our user's upgrade request to the Synapse user's /sync showing the invite to the
  replacement room (``--upgrade-runs`` samples, a fresh room each).

Latencies: median, p95, min, max in milliseconds. A part that fails reports ``{"error": …}``
so the other parts still produce figures.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks._common import measure_engines, ms, parse_engines, rate
from benchmarks._federation_stream import PDUS_PER_TRANSACTION, join_remote_member
from tests.federation.cs_client import MatrixClient
from tests.federation.fake_remote import FakeRemoteServer
from tests.federation.interop_peer import OurServer
from tests.federation.synapse_harness import SynapseServer

PARTS = ("inbound", "peer")
#: A generous bound on each wait for the peer (a failure, not a measurement, if exceeded).
WAIT_SECONDS = 120.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engines", default="sqlite,postgres", type=parse_engines)
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get(
            "HOMESERVER_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--parts", default=",".join(PARTS), help="comma list of inbound, peer")
    parser.add_argument("--transactions", type=int, default=None, help="default 40 (quick 5)")
    parser.add_argument("--per-transaction", type=int, default=PDUS_PER_TRANSACTION)
    parser.add_argument("--runs", type=int, default=None, help="message samples, 30 (quick 5)")
    parser.add_argument("--upgrade-runs", type=int, default=None, help="default 8 (quick 2)")
    parser.add_argument("--new-version", default="12", help="room version of the upgrades")


def latency(samples: Sequence[float]) -> dict[str, float | int]:
    """Median, p95 (nearest rank), min and max of ``samples`` (seconds), in milliseconds."""
    ordered = sorted(samples)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {
        "samples": len(ordered),
        "median_ms": ms(statistics.median(ordered)),
        "p95_ms": ms(p95),
        "min_ms": ms(ordered[0]),
        "max_ms": ms(ordered[-1]),
    }


@asynccontextmanager
async def our_server(workdir: Path, engine: str, postgres_dsn: str) -> AsyncIterator[OurServer]:
    server = OurServer(workdir / "ours", engine, postgres_dsn)
    await server.create()
    try:
        server.start()
        yield server
    finally:
        await server.destroy()


async def inbound(args: argparse.Namespace, engine: str, workdir: Path) -> dict[str, Any]:
    transactions = args.transactions or (5 if args.quick else 40)
    async with (
        our_server(workdir, engine, args.postgres_dsn) as ours,
        aiohttp.ClientSession() as session,
        FakeRemoteServer(workdir / "remote") as remote,
    ):
        alice = await MatrixClient.register(
            session, ours.client_url, ours.registration_secret, "alice"
        )
        room_id = await alice.create_room(preset="public_chat")
        member = await join_remote_member(
            remote, ours.federation_url, ours.server_name, room_id, "streamer"
        )
        for warm_up in member.build_transactions(1, args.per_transaction):
            await member.send(warm_up)
        batch = member.build_transactions(transactions, args.per_transaction)
        durations = []
        accepted = 0
        began = time.perf_counter()
        for transaction in batch:
            start = time.perf_counter()
            accepted += await member.send(transaction)
            durations.append(time.perf_counter() - start)
        elapsed = time.perf_counter() - began
        # The last streamed event reached the room as our users see it.
        last = member.sent[-1]
        status, _ = await alice.call("GET", f"/rooms/{room_id}/event/{last}")
        return {
            "room_version": member.room_version.identifier,
            "transactions": transactions,
            "pdus_per_transaction": args.per_transaction,
            "pdus_accepted": accepted,
            "seconds": round(elapsed, 3),
            "pdus_per_second": rate(accepted, elapsed),
            "transaction": latency(durations),
            "last_event_visible_to_local_user": status == 200,
        }


async def _joined_pair(
    alice: MatrixClient, bob: MatrixClient, ours: OurServer, **create: Any
) -> str:
    room_id = await alice.create_room(**create)
    await alice.invite(room_id, bob.user_id)
    await bob.wait_for_invite(room_id, WAIT_SECONDS)
    await bob.join(room_id, via=[ours.server_name])
    return room_id


async def peer(args: argparse.Namespace, engine: str, workdir: Path) -> dict[str, Any]:
    runs = args.runs or (5 if args.quick else 30)
    upgrade_runs = args.upgrade_runs or (2 if args.quick else 8)
    synapse = SynapseServer(workdir / "synapse")
    synapse_start = synapse.start()
    try:
        async with (
            our_server(workdir, engine, args.postgres_dsn) as ours,
            aiohttp.ClientSession() as session,
        ):
            alice = await MatrixClient.register(
                session, ours.client_url, ours.registration_secret, "alice"
            )
            bob = await MatrixClient.register(
                session, synapse.client_url, synapse.registration_secret, "bob"
            )
            await bob.sync_once(0)
            room_id = await _joined_pair(alice, bob, ours, preset="private_chat")

            message_samples = []
            for i in range(runs):
                body = f"latency probe {i}"
                start = time.perf_counter()
                await alice.send_message(room_id, body)
                await bob.wait_for_message(room_id, body, WAIT_SECONDS)
                message_samples.append(time.perf_counter() - start)

            upgrade_samples = []
            for _ in range(upgrade_runs):
                old_room = await _joined_pair(alice, bob, ours, preset="private_chat")
                start = time.perf_counter()
                new_room = await alice.upgrade(old_room, args.new_version)
                await bob.wait_for_invite(new_room, WAIT_SECONDS)
                upgrade_samples.append(time.perf_counter() - start)
    finally:
        synapse.stop()
    return {
        "synapse_start_seconds": round(synapse_start, 2),
        "message_send_to_peer_sync": latency(message_samples),
        "upgrade_to_peer_invite_in_sync": latency(upgrade_samples),
        "upgrade_new_version": args.new_version,
    }


async def _measure(args: argparse.Namespace, engine: str) -> dict[str, Any]:
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    result: dict[str, Any] = {"engine": engine}
    for part, function in (("inbound", inbound), ("peer", peer)):
        if part not in parts:
            continue
        with tempfile.TemporaryDirectory(prefix=f"bench-federation-{part}-{engine}-") as tmp:
            try:
                result[part] = await function(args, engine, Path(tmp))
            except Exception as e:  # a failing part must not hide the other's figures
                result[part] = {"error": f"{type(e).__name__}: {e}"[:2000]}
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    unknown = {p.strip() for p in args.parts.split(",")} - set(PARTS) - {""}
    if unknown:
        raise SystemExit(f"--parts: unknown {sorted(unknown)} (known: {', '.join(PARTS)})")
    return {"engines": await measure_engines(args, _measure)}
