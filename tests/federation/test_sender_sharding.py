"""The federation sender over several processes (homeserver/federation/sender.py with
streams/leases.py): two Homeserver instances over one database, each destination delivered by
exactly one of them (rendezvous hashing over the live instances, under the destination's
lease), and when one stops renewing (a crash: no clean stop), the other takes its destinations
over, resends the transaction that was in flight with the same ID and content, and delivers the
rest exactly once.

Each instance's federation client is a stub recording every /send; a request answered 200 is a
delivery. On SQLite the two instances share one store (one process, as SQLite allows); on
PostgreSQL each has its own connection pool on one schema."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from homeserver.app import Homeserver
from homeserver.crypto.canonical_json import canonical_json_text, parse_json
from homeserver.federation.client import FederationUnreachable
from homeserver.federation.sender import owner_of
from tests.conftest import OpenTestDatabase
from tests.two_instances import two_instances

LEASE_TIMEOUT = "1500ms"
SEND_PREFIX = "/_matrix/federation/v1/send/"
DESTINATIONS = [f"peer{n}.example" for n in range(8)]


class RecordingClient:
    """Stands in for the federation client: records each /send; answers 200 unless told to
    hang (a request in flight when its process dies)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.hang = False
        self.unreachable = False
        #: (destination, txn ID, body) of every request, and of those answered.
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.delivered: list[tuple[str, str, dict[str, Any]]] = []

    async def put_json(
        self, destination: str, path: str, content: Any, query: Any = None, **_: Any
    ) -> Any:
        assert path.startswith(SEND_PREFIX)
        sent = (destination, path[len(SEND_PREFIX) :], parse_json(canonical_json_text(content)))
        self.requests.append(sent)
        if self.unreachable:
            raise FederationUnreachable("down")
        if self.hang:
            await asyncio.Event().wait()  # until the process "dies" (cancelled)
        self.delivered.append(sent)
        return {"pdus": {}}

    async def close(self) -> None:
        return None


async def eventually(condition: Callable[[], Any], what: str, seconds: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
async def instances(
    db_engine: str, open_test_database: OpenTestDatabase, tmp_path: Path
) -> AsyncIterator[dict[str, Homeserver]]:
    worker_leases = {"lease_timeout": LEASE_TIMEOUT, "poll_interval": "30ms"}
    async with two_instances(
        db_engine, open_test_database, tmp_path, worker_leases=worker_leases
    ) as made:
        for name, hs in made.items():
            hs.federation_sender.client = RecordingClient(name)  # type: ignore[assignment]
        yield made
        for hs in made.values():
            await hs.federation_sender.stop()


def client(hs: Homeserver) -> RecordingClient:
    recording = hs.federation_sender.client
    assert isinstance(recording, RecordingClient)
    return recording


async def enqueue_round(hs: Homeserver, round_no: int, per_destination: int = 3) -> None:
    async with hs.store.db.transaction("test_enqueue") as txn:
        await hs.store.outbox.enqueue_many_txn(
            txn,
            [
                (d, {"kind": "edu", "edu_type": "m.test", "content": {"r": round_no, "n": n}})
                for n in range(per_destination)
                for d in DESTINATIONS
            ],
            now=hs.clock(),
        )


def delivered_entries(*clients: RecordingClient) -> Counter[tuple[str, int, int]]:
    return Counter(
        (destination, edu["content"]["r"], edu["content"]["n"])
        for c in clients
        for destination, _txn, body in c.delivered
        for edu in body["edus"]
    )


async def outbox_empty(hs: Homeserver) -> bool:
    return not await hs.store.outbox.destinations_with_entries()


async def test_each_destination_is_delivered_once_and_taken_over(
    instances: dict[str, Homeserver],
) -> None:
    a, b = instances["a"], instances["b"]
    owners = {d: owner_of(d, ["a", "b"]) for d in DESTINATIONS}
    assert set(owners.values()) == {"a", "b"}  # the names split between the two
    for hs in (a, b):
        await hs.leases.start()
        await hs.federation_sender.start()
    for hs in (a, b):

        async def sees_both(hs: Homeserver = hs) -> bool:
            return await hs.leases.refresh_live_instances() == ["a", "b"]

        await eventually(sees_both, "both instances live")

    # Round 1: queued by a, for every destination; each is sent by its owner alone.
    await enqueue_round(a, 1)
    await eventually(lambda: outbox_empty(a), "round 1 delivered")
    delivered = delivered_entries(client(a), client(b))
    assert delivered == Counter({(d, 1, n): 1 for d in DESTINATIONS for n in range(3)})
    for name in ("a", "b"):
        assert {d for d, _t, _b in client(instances[name]).requests} == {
            d for d, owner in owners.items() if owner == name
        }

    # Round 2: a hangs on every request (in flight when it dies), then dies without a clean
    # stop: its leases and heartbeat simply stop being renewed.
    client(a).hang = True
    seen = len(client(a).requests)
    await enqueue_round(b, 2)
    mine = {d for d, owner in owners.items() if owner == "a"}

    def in_flight() -> dict[str, tuple[str, dict[str, Any]]]:
        return {d: (t, body) for d, t, body in client(a).requests[seen:] if d in mine}

    await eventually(lambda: set(in_flight()) == mine, "a's requests in flight")
    hung = in_flight()
    task = a.leases._task
    assert task is not None
    task.cancel()  # a's keeper stops renewing
    await a.federation_sender.stop()  # a's work stops (its leases stay in the table)

    crashed_at = asyncio.get_running_loop().time()
    await eventually(lambda: outbox_empty(b), "b delivered what a left", seconds=30)
    # Not before a's leases ran out.
    assert asyncio.get_running_loop().time() - crashed_at > 1.0
    delivered = delivered_entries(client(a), client(b))
    everything = {(d, r, n): 1 for d in DESTINATIONS for r in (1, 2) for n in range(3)}
    assert delivered == Counter(everything)
    assert b.leases.live_instances() == ["b"]
    # b resent each transaction a had in flight with its ID and content (the peer dedupes).
    for destination, (txn_id, body) in hung.items():
        first = next((t, bd) for d, t, bd in client(b).delivered if d == destination)
        assert first == (txn_id, body), destination


async def test_a_destination_in_backoff_moves_to_a_process_that_joins(
    instances: dict[str, Homeserver],
) -> None:
    """a alone owns everything; a destination it is waiting out a backoff for (minutes) hashes
    to b once b is live: a gives it up at once, and b waits out the same backoff, or retries
    when the destination shows signs of life."""
    a, b = instances["a"], instances["b"]
    destination = next(d for d in DESTINATIONS if owner_of(d, ["a", "b"]) == "b")
    client(a).unreachable = True
    await a.leases.start()
    await a.federation_sender.start()
    async with a.store.db.transaction("test_enqueue") as txn:
        edu = {"kind": "edu", "edu_type": "m.test", "content": {"n": 1}}
        await a.store.outbox.enqueue_many_txn(txn, [(destination, edu)], now=a.clock())
    await eventually(
        lambda: a.federation_sender.waiting_until(destination) is not None, "a backs off"
    )
    lease = a.federation_sender.lease_name(destination)
    await b.leases.start()
    await b.federation_sender.start()

    async def held_by_b() -> bool:
        row = await b.store.leases.get(lease)
        return row is not None and row.holder == "b"

    await eventually(held_by_b, "b took the destination over")
    await eventually(
        lambda: b.federation_sender.waiting_until(destination) is not None, "b waits too"
    )
    assert a.federation_sender.waiting_until(destination) is None
    assert len(client(a).requests) == 1 and client(b).requests == []
    b.federation_sender.on_destination_reachable(destination)
    await eventually(lambda: outbox_empty(b), "b delivered")
    assert [body["edus"] for _d, _t, body in client(b).delivered] == [
        [{"edu_type": "m.test", "content": {"n": 1}}]
    ]
