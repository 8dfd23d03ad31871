"""Two Homeserver instances over one database (tests/two_instances.py): what must happen once,
or one at a time, does so across processes.

* received PDUs of one room, handed to both at once (each fetching the same gap), are stored
  once each and leave one consistent DAG (the room's advisory lock: PostgreSQL only — SQLite
  is served by one process);
* one device's one-time-key uploads reaching both at once: one stored, a conflicting one refused;
* a remote user's device-list update applied on one during a resync on the other is not
  overwritten by the resync's older answer;
* a stranded upgrade lock is left alone while its process lives and recovered once it is gone;
  a room deletion left unfinished is resumed by one of them; the push job runs on one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from homeserver.admin.room_deletion import empty_result, parse_deletion_body
from homeserver.app import Homeserver
from homeserver.errors import BadRequest
from homeserver.room_versions import RoomVersion, get_room_version
from homeserver.rooms.lifecycle import RoomStatus
from tests.builders import make_room
from tests.conftest import OpenTestDatabase
from tests.e2e_keys.helpers import Device
from tests.federation.received_helpers import Remote, RemoteRequester
from tests.federation.test_e2e_edus import StubRemoteKeys, device_update
from tests.harness import make_user
from tests.two_instances import two_instances

ALICE = "@alice:test.example"


@pytest.fixture
async def instances(
    db_engine: str, open_test_database: OpenTestDatabase, tmp_path: Path
) -> AsyncIterator[dict[str, Homeserver]]:
    async with two_instances(
        db_engine, open_test_database, tmp_path, worker_leases={"lease_timeout": "1s"}
    ) as made:
        yield made


def postgres_only(db_engine: str) -> None:
    if db_engine == "sqlite":
        pytest.skip("several processes over one database need PostgreSQL")


class SlowRequester(RemoteRequester):
    """Answers gap-filling requests after a pause, so both instances are inside the pipeline
    of the same events at once."""

    async def post_json(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.05)
        return await super().post_json(*args, **kwargs)


async def test_received_pdus_of_one_room_on_two_instances(
    db_engine: str, instances: dict[str, Homeserver]
) -> None:
    postgres_only(db_engine)
    a, b = instances["a"], instances["b"]
    room_id = await make_room(a, ALICE)
    room_version: RoomVersion = get_room_version("10")
    remote = Remote()
    await remote.seed_key(a)
    await remote.join(a, room_id)
    for hs in (a, b):
        hs.received_events.fetcher.client = SlowRequester(remote, room_version)  # type: ignore[assignment]
    chain: list[tuple[str, dict[str, Any]]] = []
    prev = (await a.store.events.get_forward_extremities(room_id)).event_ids
    for n in range(6):
        event_id, pdu = await remote.build(
            a,
            room_id,
            type="m.room.message",
            sender=remote.user("r"),
            content={"msgtype": "m.text", "body": str(n)},
            prev_events=prev,
        )
        chain.append((event_id, pdu))
        prev = [event_id]
    newest = chain[-1][1]

    async def in_order(hs: Homeserver) -> None:
        for _event_id, pdu in chain:
            await remote.receive(hs, dict(pdu))

    # Both get the newest at once: one of them fetches the gap and stores it, the other then
    # finds the event stored (without the room's lock both would fetch and store the gap).
    await asyncio.gather(remote.receive(a, dict(newest)), remote.receive(b, dict(newest)))
    fetches = [path for _m, path in remote.requests if "/get_missing_events/" in path]
    assert len(fetches) == 1, remote.requests
    # And every event again, to both, in order and at once: nothing changes.
    await asyncio.gather(in_order(a), in_order(b))
    ids = [event_id for event_id, _pdu in chain]
    rows = await a.store.db.fetchall(
        "SELECT event_id, COUNT(*) FROM events WHERE room_id = ? GROUP BY event_id", room_id
    )
    counts = {r[0]: int(r[1]) for r in rows}
    assert all(counts.get(i) == 1 for i in ids), counts
    assert (await a.store.events.get_forward_extremities(room_id)).event_ids == [ids[-1]]
    orderings = [
        (await a.store.events.get_event(i)).internal.stream_ordering  # type: ignore[union-attr]
        for i in ids
    ]
    assert orderings == sorted(orderings)


async def test_one_time_key_uploads_of_one_device_on_two_instances(
    db_engine: str, instances: dict[str, Homeserver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two uploads of one key ID with different contents reach the two instances at once:
    one is stored, the other refused (400) — not both answered 200 with one silently lost."""
    postgres_only(db_engine)
    a, b = instances["a"], instances["b"]
    user = await make_user(a, "alice", device_id="PHONE")
    device = Device(user.user_id, "PHONE")
    await a.e2e_keys.upload(user.user_id, "PHONE", {"device_keys": device.device_keys()})
    for hs in (a, b):  # a pause between looking for the keys and storing them
        read = hs.store.e2e_keys.get_one_time_keys_txn

        async def slow_read(*args: Any, read: Any = read) -> Any:
            found = await read(*args)
            await asyncio.sleep(0.2)
            return found

        monkeypatch.setattr(hs.store.e2e_keys, "get_one_time_keys_txn", slow_read)
    uploads = [device.one_time_keys(3) for _ in range(2)]  # the same IDs, other contents
    answers = await asyncio.gather(
        *(
            hs.e2e_keys.upload(user.user_id, "PHONE", {"one_time_keys": keys})
            for hs, keys in zip((a, b), uploads, strict=True)
        ),
        return_exceptions=True,
    )
    refused = [x for x in answers if isinstance(x, BadRequest)]
    stored = [x for x in answers if isinstance(x, dict)]
    assert (len(refused), len(stored)) == (1, 1), answers
    assert stored[0]["one_time_key_counts"]["signed_curve25519"] == 3


async def test_background_work_runs_once_across_instances(
    db_engine: str, instances: dict[str, Homeserver]
) -> None:
    a, b = instances["a"], instances["b"]
    for hs in (a, b):
        await hs.leases.start()

    # The push job: started on one instance only; when it stops, the other takes it.
    await a.push_job.enable()
    await b.push_job.enable()
    assert (a.push_job.running, b.push_job.running) == (True, False)
    await a.push_job.disable()
    await b.push_job.check()
    assert b.push_job.running
    await b.push_job.disable()

    # A room deletion left unfinished: both instances resume, one runs it.
    doomed = await make_room(a, ALICE)
    await a.store.room_deletions.add("DEL1", doomed, _deletion_params(), _empty(), a.clock())
    runs: list[str] = []
    for name, hs in (("a", a), ("b", b)):
        real_run = hs.room_deletion._run

        async def counted(delete_id: str, name: str = name, real_run: Any = real_run) -> None:
            runs.append(name)
            await real_run(delete_id)

        hs.room_deletion._run = counted  # type: ignore[method-assign]
    await asyncio.gather(a.room_deletion.resume(), b.room_deletion.resume())
    await asyncio.gather(a.room_deletion.wait_idle(), b.room_deletion.wait_idle())
    assert len(runs) == 1
    record = await a.store.room_deletions.get("DEL1")
    assert record is not None and record.status == "complete"

    # An upgrade lock taken by a while a runs: b's start-up recovery and b's sweep leave it.
    room_id = await make_room(a, ALICE)
    assert await a.room_upgrades.locks.acquire(room_id, ALICE, "11") is not None
    alive = b.leases.instance_alive if db_engine == "postgres" else None
    assert await b.room_upgrades.recover_stranded_upgrades(alive) == []
    live = await b.leases.refresh_live_instances()
    assert await b.room_upgrades.recover_abandoned_upgrades(live, alive) == []
    # a's restart (same instance name) recovers its own stranded lock at once.
    assert await a.room_upgrades.recover_stranded_upgrades() == [room_id]
    assert await a.room_upgrades.locks.acquire(room_id, ALICE, "11") is not None
    if db_engine == "postgres":
        # a is killed: its connections end, and with them its liveness lock; b knows at once
        # (a's heartbeat is still fresh) and a restarting b recovers the lock.
        assert await b.leases.instance_alive("a")
        await a.store.db.close()
        assert not await b.leases.instance_alive("a")
        assert await b.room_upgrades.recover_stranded_upgrades(alive) == [room_id]
    else:
        # a stops: b's sweep (the job, now b's) recovers it once a left the live list.
        await a.leases.stop()
        await b.upgrade_recovery_job.enable()
        await b.upgrade_recovery_job.disable()
    room = await b.store.rooms.get_room(room_id)
    assert room is not None and room.status == RoomStatus.ACTIVE


def _deletion_params() -> dict[str, Any]:
    return asdict(parse_deletion_body({"purge": False}, ALICE))


def _empty() -> dict[str, Any]:
    return empty_result()


async def test_device_list_update_on_one_instance_during_a_resync_on_the_other(
    instances: dict[str, Homeserver],
) -> None:
    """a resyncs a remote user's list; meanwhile b receives a newer update (and resyncs too,
    first): a's older answer must not be stored over what b stored."""
    a, b = instances["a"], instances["b"]
    room_id = await make_room(a, ALICE)
    remote = Remote()
    await remote.seed_key(a)
    await remote.join(a, room_id, "r")
    user = remote.user("r")
    stubs = {"a": StubRemoteKeys(), "b": StubRemoteKeys()}
    for name, hs in (("a", a), ("b", b)):
        hs.e2e_edus.remote_keys = stubs[name]  # type: ignore[assignment]
    stubs["a"].gates = [asyncio.Event()]
    only_a = {"A": {"device_id": "A"}}
    stubs["a"].lists[user] = {"stream_id": 5, "devices": only_a, "cross_signing": {}}
    stubs["b"].lists[user] = {
        "stream_id": 6,
        "devices": {"A": {"device_id": "A"}, "B": {"device_id": "B"}},
        "cross_signing": {},
    }
    await a.e2e_edus.on_edus(remote.name, [device_update(user, "A", 5, [])])
    await stubs["a"].wait_for_calls(1)  # a's resync asked; its answer (stream 5) is on its way
    await b.e2e_edus.on_edus(remote.name, [device_update(user, "B", 6, [5])])
    await b.e2e_edus.wait_for_resyncs()  # b's resync stored stream 6
    stubs["a"].gates[0].set()
    await a.e2e_edus.wait_for_resyncs()
    cached = await a.store.remote_device_lists.get(user)
    assert cached is not None and (cached.stream_id, cached.stale) == (6, False)
    assert set(cached.devices) == {"A", "B"}
