"""``scripts/bench federation``: federation throughput and delivery latency, per engine.

* ``inbound`` — PDUs our server accepts per second from a transaction stream: a fake remote
  server (its own key, HTTPS on loopback) joins a public room on a real ``homeserver run`` process
  through ``make_join`` / ``v2/send_join``, then PUTs ``/send`` transactions of
  ``--per-transaction`` (50) signed message PDUs, each chained to the one before by
  ``prev_events``. The transactions are built and signed before the clock starts; one warm-up
  transaction first (it also makes our server fetch the remote's key). Every PDU must come back
  accepted, else the run reports the refusal instead of a rate.
* ``synapse_inbound`` — the same stream into a real Synapse (``synapse_harness.py``, its default
  SQLite database; engine-independent, reported once under ``"synapse"`` with Synapse's version):
  a Synapse user creates the public room through the client API, the fake remote joins it as
  above (Synapse fetches the remote's key from ``/_matrix/key/v2/server`` itself: it has no
  trusted key servers) and PUTs the same transactions. Synapse answers ``/send`` once the PDUs
  pass the signature and hash checks and are staged, *before* it authorises and persists them
  (``FederationServer._handle_received_pdu`` hands them to a background
  ``_process_incoming_pdus_in_room_inner``), so each transaction is timed from the PUT until the
  Synapse user's ``/sync`` shows its last event, and every one of its events must have shown up
  there (a rejected or soft-failed PDU never does). The time to the ``/send`` answer alone is
  reported too. ``"ratio"`` divides our figures (each engine) by Synapse's: above 1 for
  ``pdus_per_second`` means ours is faster; below 1 for the transaction times means ours is
  quicker.
* ``peer`` — against a real Synapse on loopback (``tests/federation/synapse_harness.py``): the time
  from our user's send to the Synapse user's /sync showing the message (``--runs`` samples), and
  from our user's upgrade request to the Synapse user's /sync showing the invite to the
  replacement room (``--upgrade-runs`` samples, a fresh room each).
* ``follow`` — from a remote tombstone's arrival to all of N of our users joined in the
  replacement room, N = 1, 50, 500 (``--follow-sizes``; quick: 1, 10), between two of our servers
  in this process (``benchmarks/_upgrade_follow.py``).

Latencies: median, p95, min, max in milliseconds. A part that fails reports ``{"error": …}``
so the other parts still produce figures.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import _upgrade_follow as upgrade_follow
from benchmarks._common import measure_engines, ms, parse_engines, rate
from benchmarks._federation_stream import (
    PDUS_PER_TRANSACTION,
    RemoteMember,
    StreamError,
    Transaction,
    join_remote_member,
)
from tests.federation.cs_client import MatrixClient
from tests.federation.fake_remote import FakeRemoteServer
from tests.federation.interop_peer import OurServer
from tests.federation.synapse_harness import SynapseServer

PARTS = ("inbound", "peer", "synapse_inbound", "follow")
#: Parts measured once per engine of ours; the others run once, against Synapse alone.
ENGINE_PARTS = ("inbound", "peer", "follow")
#: A generous bound on each wait for the peer (a failure, not a measurement, if exceeded).
WAIT_SECONDS = 120.0
#: Pause between two /sync requests of the Synapse watcher. A long poll returns at the first
#: new event, so without a pause the watcher would sync once per PDU and that work (measured:
#: ~270 syncs for 250 PDUs) competes with the processing being timed; 0.1 s bounds it to ten
#: syncs a second for at most 0.1 s of added latency per transaction.
SYNC_PAUSE_SECONDS = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engines", default="sqlite,postgres", type=parse_engines)
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get(
            "HOMESERVER_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}"
    )
    parser.add_argument("--transactions", type=int, default=None, help="default 40 (quick 5)")
    parser.add_argument("--per-transaction", type=int, default=PDUS_PER_TRANSACTION)
    parser.add_argument("--runs", type=int, default=None, help="message samples, 30 (quick 5)")
    parser.add_argument("--upgrade-runs", type=int, default=None, help="default 8 (quick 2)")
    parser.add_argument("--new-version", default="12", help="room version of the upgrades")
    parser.add_argument(
        "--follow-sizes",
        default=None,
        help="comma list of N for the follow part (default 1,50,500; quick 1,10)",
    )


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
async def our_server(workdir: Path, engine: str) -> AsyncIterator[OurServer]:
    # On PostgreSQL the server gets a migrated database of its own from the test templates
    # (tests/dbtemplate.py, on HOMESERVER_TEST_POSTGRES_DSN).
    server = OurServer(workdir / "ours", engine)
    await server.create()
    try:
        server.start()
        yield server
    finally:
        await server.destroy()


async def _already_settled(transaction: Transaction) -> None:
    """Our server answers ``/send`` after persisting the PDUs: nothing more to wait for."""


async def _stream(
    member: RemoteMember,
    transactions: int,
    per_transaction: int,
    settled: Callable[[Transaction], Awaitable[None]] = _already_settled,
) -> tuple[dict[str, Any], list[float]]:
    """One warm-up transaction, then ``transactions`` more timed one after the other (each
    built and signed beforehand); a transaction's time runs from its PUT until ``settled``.
    The figures, and the seconds each PUT took to be answered."""
    for warm_up in member.build_transactions(1, per_transaction):
        await member.send(warm_up)
        await settled(warm_up)
    batch = member.build_transactions(transactions, per_transaction)
    durations, answers = [], []
    accepted = 0
    began = time.perf_counter()
    for transaction in batch:
        start = time.perf_counter()
        accepted += await member.send(transaction)
        answered = time.perf_counter()
        await settled(transaction)
        durations.append(time.perf_counter() - start)
        answers.append(answered - start)
    elapsed = time.perf_counter() - began
    return {
        "room_version": member.room_version.identifier,
        "transactions": transactions,
        "pdus_per_transaction": per_transaction,
        "pdus_accepted": accepted,
        "seconds": round(elapsed, 3),
        "pdus_per_second": rate(accepted, elapsed),
        "transaction": latency(durations),
    }, answers


async def inbound(args: argparse.Namespace, engine: str, workdir: Path) -> dict[str, Any]:
    transactions = args.transactions or (5 if args.quick else 40)
    async with (
        our_server(workdir, engine) as ours,
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
        # The answer is the whole transaction's time here: no separate figure for it.
        figures, _ = await _stream(member, transactions, args.per_transaction)
        # The last streamed event reached the room as our users see it.
        last = member.sent[-1]
        status, _ = await alice.call("GET", f"/rooms/{room_id}/event/{last}")
        figures["last_event_visible_to_local_user"] = status == 200
        return figures


def _lean_sync_filter(room_id: str, per_transaction: int) -> str:
    """Only the room's timeline, long enough that no transaction's events are cut off."""
    return json.dumps(
        {
            "room": {
                "rooms": [room_id],
                "timeline": {"limit": max(100, 2 * per_transaction)},
                "state": {"types": []},
                "ephemeral": {"types": []},
                "account_data": {"types": []},
            },
            "presence": {"types": []},
            "account_data": {"types": []},
        },
        separators=(",", ":"),
    )


class SyncWatcher:
    """The Synapse user's incremental ``/sync`` of one room: which event IDs it has shown."""

    def __init__(self, client: MatrixClient, room_id: str, per_transaction: int) -> None:
        self.client = client
        self.room_id = room_id
        self.filter = _lean_sync_filter(room_id, per_transaction)
        self.since: str | None = None
        self.seen: set[str] = set()
        #: /sync requests made, reported: each one is work for Synapse while it processes.
        self.requests = 0

    async def sync(self, timeout_ms: int) -> None:
        self.requests += 1
        params = [("timeout", str(timeout_ms)), ("filter", self.filter)]
        if self.since is not None:
            params.append(("since", self.since))
        response = await self.client.ok("GET", "/sync", None, params)
        timeline = response.get("rooms", {}).get("join", {}).get(self.room_id, {}).get("timeline")
        if timeline:
            if timeline.get("limited") and self.since is not None:
                # A gap: events between two syncs were left out, so "seen" could miss some.
                raise StreamError("Synapse's /sync timeline was limited (a gap)")
            self.seen.update(e["event_id"] for e in timeline.get("events", []))
        self.since = response["next_batch"]

    async def settled(self, transaction: Transaction) -> None:
        """Sync until the transaction's last event shows; then all of its events must have."""
        last = transaction.event_ids[-1]
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            # A long poll: Synapse answers as soon as something new is in the room.
            await self.sync(timeout_ms=10_000)
            if last in self.seen:
                break
            if time.monotonic() > deadline:
                raise StreamError(f"Synapse's /sync never showed {last}")
            await asyncio.sleep(SYNC_PAUSE_SECONDS)
        missing = [i for i in transaction.event_ids if i not in self.seen]
        if missing:
            raise StreamError(
                f"{len(missing)} of the transaction's PDUs were answered {{}} but never "
                f"reached /sync (rejected or soft-failed), e.g. {missing[0]}"
            )


async def synapse_inbound(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    transactions = args.transactions or (5 if args.quick else 40)
    synapse = SynapseServer(workdir / "synapse")
    synapse_start = synapse.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            FakeRemoteServer(workdir / "remote") as remote,
        ):
            resident = await MatrixClient.register(
                session, synapse.client_url, synapse.registration_secret, "resident"
            )
            room_id = await resident.create_room(preset="public_chat")
            member = await join_remote_member(
                remote, synapse.federation_url, synapse.server_name, room_id, "streamer"
            )
            watcher = SyncWatcher(resident, room_id, args.per_transaction)
            await watcher.sync(timeout_ms=0)
            figures, answers = await _stream(
                member, transactions, args.per_transaction, watcher.settled
            )
            figures["sync_requests"] = watcher.requests
    finally:
        synapse.stop()
    figures["send_answer"] = latency(answers)
    figures["timed_to"] = (
        "the Synapse user's /sync showing the transaction's last event: Synapse answers /send "
        "after checking signatures and staging the PDUs, before processing them"
    )
    figures["synapse_start_seconds"] = round(synapse_start, 2)
    return figures


def ratios(engines: dict[str, Any], synapse: dict[str, Any]) -> dict[str, Any]:
    """Our inbound figures over Synapse's, per engine that has both."""
    theirs = synapse.get("inbound", {})
    if "pdus_per_second" not in theirs:
        return {}
    result = {}
    for engine, measured in engines.items():
        ours = measured.get("inbound", {})
        if "pdus_per_second" not in ours:
            continue
        result[engine] = {
            "inbound_pdus_per_second": _ratio(ours["pdus_per_second"], theirs["pdus_per_second"]),
            "inbound_transaction_median": _ratio(
                ours["transaction"]["median_ms"], theirs["transaction"]["median_ms"]
            ),
            "inbound_transaction_p95": _ratio(
                ours["transaction"]["p95_ms"], theirs["transaction"]["p95_ms"]
            ),
        }
    return result


def _ratio(ours: float, theirs: float) -> float:
    # Three significant figures: latency ratios can be far below 0.01.
    return float(f"{ours / max(theirs, 1e-9):.3g}")


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
            our_server(workdir, engine) as ours,
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


async def follow(args: argparse.Namespace, engine: str, workdir: Path) -> dict[str, Any]:
    if args.follow_sizes:
        sizes = tuple(int(n) for n in args.follow_sizes.split(",") if n.strip())
    else:
        sizes = upgrade_follow.QUICK_SIZES if args.quick else upgrade_follow.DEFAULT_SIZES
    return await upgrade_follow.measure(engine, args.postgres_dsn, workdir, sizes)


def _parts(args: argparse.Namespace) -> list[str]:
    return [p.strip() for p in args.parts.split(",") if p.strip()]


async def _part(name: str, function: Callable[[Path], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """``function(workdir)`` in a temporary directory; a failure becomes ``{"error": …}`` so
    it does not hide the other parts' figures."""
    with tempfile.TemporaryDirectory(prefix=f"bench-federation-{name}-") as tmp:
        try:
            return await function(Path(tmp))
        except Exception as e:
            return {"error": f"{type(e).__name__}: {e}"[:2000]}


async def _measure(args: argparse.Namespace, engine: str) -> dict[str, Any]:
    parts = _parts(args)
    result: dict[str, Any] = {"engine": engine}
    for part, function in (("inbound", inbound), ("peer", peer), ("follow", follow)):
        if part in parts:
            result[part] = await _part(
                f"{part}-{engine}", lambda workdir, f=function: f(args, engine, workdir)
            )
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    parts = _parts(args)
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"--parts: unknown {sorted(unknown)} (known: {', '.join(PARTS)})")
    result: dict[str, Any] = {"engines": {}}
    if set(parts) & set(ENGINE_PARTS):
        result["engines"] = await measure_engines(args, _measure)
    if "synapse_inbound" in parts:
        synapse = {
            "version": importlib.metadata.version("matrix-synapse"),
            "database": "sqlite3",
            "inbound": await _part("synapse_inbound", lambda w: synapse_inbound(args, w)),
        }
        result["synapse"] = synapse
        result["ratio"] = ratios(result["engines"], synapse)
    return result
