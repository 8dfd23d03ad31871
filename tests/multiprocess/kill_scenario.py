"""The SIGKILL scenario of tests/multiprocess/test_three_processes.py (its last test, on the
module's cluster): a process of three killed with SIGKILL under a createRoom/send load (issue
17, "Done when") loses no acknowledged write, the federation destination it was delivering to
is taken over by a live process, and a real Synapse peer receives every event exactly once.

A Synapse user joins a room of ours through the federation balancer (tests/multiprocess/
cluster.py); before the load, a few messages sent round-robin show which ONE process delivers to
Synapse (its ``homeserver_federation_transactions_total{outcome="sent"}`` moves, no other's
does). That process is killed mid-load. Afterwards every write the clients saw answered 200 is
in the database (read back through the live processes), Synapse's timeline holds every one of
our events of the room once, Synapse's log never says it received one of them a second time,
and another process's counter of transactions sent to Synapse has moved.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter

import aiohttp

from tests.federation.cs_client import MatrixClient
from tests.federation.synapse_harness import SynapseServer
from tests.http_client import CS, q
from tests.multiprocess.cluster import LEASE_SECONDS, Cluster, RoundRobin

WAIT = 90.0
#: The load runs this long, and the victim is killed this far into it.
LOAD_SECONDS = 4.0
KILL_AFTER = 1.5
#: Rooms a load user creates before the next takes over (rc_room_creation's burst is 10).
ROOMS_PER_USER = 9
SENT = "homeserver_federation_transactions_total"


async def _sent_to(cluster: Cluster, destination: str) -> dict[int, float]:
    """Per live process: transactions it delivered to ``destination`` (answered 200)."""
    counts: dict[int, float] = {}
    for instance in cluster.instances:
        if not instance.running:
            continue
        samples = (await cluster.metrics(instance.index)).get(SENT, [])
        counts[instance.index] = sum(
            value
            for labels, value in samples
            if labels.get("destination") == destination and labels.get("outcome") == "sent"
        )
    return counts


class _Load:
    """Messages into the federated room and createRooms, spread round-robin, until stopped:
    what was acknowledged (200) is recorded; a request cut by the kill is not."""

    def __init__(self, rr: RoundRobin, room_id: str, senders: list[str], creators: list[str]):
        self.rr = rr
        self.room_id = room_id
        self.senders = senders
        self.creators = creators
        self.sent: dict[str, str] = {}  # event_id → body
        self.created: dict[str, str] = {}  # room_id → creator's token
        self.refused: Counter[str] = Counter()
        self.cut = 0
        self._stop = asyncio.Event()

    async def _send(self, worker: int, token: str) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            body = f"load {worker}.{n}"
            path = f"{CS}/rooms/{q(self.room_id)}/send/m.room.message/k-{worker}-{n}"
            try:
                status, answer = await self.rr.call(
                    "PUT", path, token, {"msgtype": "m.text", "body": body}, timeout=60
                )
            except (aiohttp.ClientError, TimeoutError):
                self.cut += 1
                continue
            if status == 200:
                self.sent[str(answer["event_id"])] = body
            else:
                self.refused[f"{status} {answer.get('errcode')}"] += 1

    async def _create(self) -> None:
        for token in self.creators:
            for _ in range(ROOMS_PER_USER):
                if self._stop.is_set():
                    return
                try:
                    status, answer = await self.rr.call(
                        "POST", f"{CS}/createRoom", token, {"name": "load"}, timeout=60
                    )
                except (aiohttp.ClientError, TimeoutError):
                    self.cut += 1
                    continue
                if status == 200:
                    self.created[str(answer["room_id"])] = token
                else:
                    self.refused[f"{status} {answer.get('errcode')}"] += 1

    async def run(self) -> None:
        workers = [self._send(i, token) for i, token in enumerate(self.senders * 2)]
        await asyncio.gather(*workers, self._create())

    def stop(self) -> None:
        self._stop.set()


async def _our_events_on_synapse(bob: MatrixClient, room_id: str, server_name: str) -> list[str]:
    """Event IDs, with repeats, of every event of ours in the room's timeline on Synapse."""
    ids: list[str] = []
    params = [("dir", "b"), ("limit", "1000")]
    while True:
        page = await bob.ok("GET", f"/rooms/{q(room_id)}/messages", None, params)
        chunk = page.get("chunk", [])
        ids += [e["event_id"] for e in chunk if e["sender"].endswith(":" + server_name)]
        if not chunk or "end" not in page:
            return ids
        params = [("dir", "b"), ("limit", "1000"), ("from", page["end"])]


async def killed_under_load(
    cluster: Cluster, synapse: SynapseServer, session: aiohttp.ClientSession
) -> None:
    """The scenario of the module docstring; leaves the killed process stopped."""
    rr = RoundRobin(session, cluster.urls)
    _, alice = await rr.register("k_alice")
    _, dave = await rr.register("k_dave")
    creators = [(await rr.register(f"k_creator{i}"))[1] for i in range(4)]
    room_id = (
        await rr.ok("POST", f"{CS}/createRoom", alice, {"preset": "public_chat", "name": "fed"})
    )["room_id"]
    await rr.ok("POST", f"{CS}/join/{q(room_id)}", dave, {})
    bob = await MatrixClient.register(
        session, synapse.client_url, synapse.registration_secret, "bob"
    )
    await bob.join(room_id, via=[cluster.server_name])

    # Before the load: which one process delivers to Synapse?
    before = await _sent_to(cluster, synapse.server_name)
    for i in range(3):
        path = f"{CS}/rooms/{q(room_id)}/send/m.room.message/warm-{i}"
        await rr.ok("PUT", path, alice, {"msgtype": "m.text", "body": f"warm-up {i}"})
    await bob.wait_for_message(room_id, "warm-up 2", WAIT)
    after = await _sent_to(cluster, synapse.server_name)
    senders = [i for i in after if after[i] > before[i]]
    assert len(senders) == 1, f"processes that sent to Synapse: {senders} ({before} → {after})"
    (victim,) = senders

    load = _Load(rr, room_id, [alice, dave], creators)
    load_task = asyncio.create_task(load.run())
    await asyncio.sleep(KILL_AFTER)
    cluster.kill(victim)
    killed_at = time.monotonic()
    # What the victim may have had in flight: a SIGKILL can land after Synapse took a
    # transaction and before the victim recorded it, so its successor resends that one
    # transaction (same txn ID and PDUs; Synapse ignores what it has). Nothing else may repeat.
    acknowledged_before_kill = set(load.sent)
    at_kill = await _sent_to(cluster, synapse.server_name)
    await asyncio.sleep(LOAD_SECONDS - KILL_AFTER)
    load.stop()
    await load_task
    assert load.sent and load.created, (len(load.sent), len(load.created), load.cut)
    assert not load.refused, load.refused

    # No acknowledged write lost: read back through the live processes.
    status, page = await rr.call("GET", f"{CS}/rooms/{q(room_id)}/messages?dir=b&limit=1000", alice)
    assert status == 200, page
    timeline = {e["event_id"] for e in page["chunk"]}
    assert len(page["chunk"]) < 1000, "one page should hold the whole load"
    missing = set(load.sent) - timeline
    assert not missing, f"{len(missing)} acknowledged messages lost: {sorted(missing)[:5]}"
    for created_room, token in load.created.items():
        status, body = await rr.call(
            "GET", f"{CS}/rooms/{q(created_room)}/state/m.room.create/", token
        )
        assert status == 200, (created_room, status, body)

    # Synapse receives every one of them, each once, delivered by the processes left.
    deadline = time.monotonic() + WAIT
    while True:
        on_synapse = await _our_events_on_synapse(bob, room_id, cluster.server_name)
        if set(load.sent) <= set(on_synapse):
            break
        assert time.monotonic() < deadline, (
            f"Synapse still lacks {len(set(load.sent) - set(on_synapse))} of "
            f"{len(load.sent)} events {time.monotonic() - killed_at:.0f} s after the kill "
            f"(lease {LEASE_SECONDS} s)"
        )
        await asyncio.sleep(0.5)
    repeated = {e: n for e, n in Counter(on_synapse).items() if n > 1}
    assert not repeated, repeated
    synapse_log = synapse.log_path.read_text(errors="replace")
    # Synapse stages received PDUs and, past 100 of a room waiting (this machine's Synapse takes
    # 10-15 a second), drops all but the newest and pulls the rest back itself (/backfill),
    # logging "already seen" for each one it had: that is Synapse re-reading, not a delivery of
    # ours. What counts is a PDU we pushed to it twice.
    pushed_log = "\n".join(
        line for line in synapse_log.splitlines() if "_process_pulled_event" not in line
    )
    received_twice = {
        event_id
        for event_id in re.findall(
            r"Ignoring received event (\S+) which we have already seen", pushed_log
        )
        if event_id in set(on_synapse)
    }
    repeated_later = received_twice - acknowledged_before_kill
    prunes = re.findall(r"Pruning (\d+) events in room \S+ from federation queue", synapse_log)
    assert not repeated_later, (
        f"Synapse was sent events twice after the kill: {repeated_later}; "
        f"it pruned its inbound queue {len(prunes)} times ({prunes} events); "
        f"its log: {synapse.log_path}"
    )
    # At most the one transaction in flight (a transaction holds at most 50 PDUs).
    assert len(received_twice) <= 50, f"Synapse received these twice: {received_twice}"
    end = await _sent_to(cluster, synapse.server_name)
    taken_over = [i for i in end if end[i] > at_kill.get(i, 0)]
    assert taken_over, f"no live process sent to Synapse after the kill: {at_kill} → {end}"
    assert victim not in end
