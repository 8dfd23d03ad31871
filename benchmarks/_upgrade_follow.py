"""``scripts/bench federation --parts follow``: from a remote tombstone's arrival to all of N of
our users joined in the replacement room (issue 14), per engine.

Two of our servers in this process, over HTTPS on loopback (``tests/federation/fake_remote.py``'s
``serving``): server A (SQLite, the remote side) hosts a public room; N users of server B (the
engine measured) join it through A (the first by ``send_join``, the others as local joins B sends
as PDUs). A's user creates a public replacement and sends the tombstone. The figure runs from the
tombstone's arrival at B (the ``active → tombstoned`` transition B records, in the transaction
that queues the follows) to the last follow B's worker finished (``updated_ts`` of the last
``done`` row): one ``make_join``/``send_join`` through A, then N − 1 local joins. Both are B's
wall clock, in milliseconds. A fresh pair of rooms per N.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks._common import throwaway_store
from homeserver.app import Homeserver
from homeserver.crypto.signing import generate_signing_key
from homeserver.rooms.lifecycle import RoomStatus
from homeserver.storage.upgrade_follows import DONE
from tests.builders import GENEROUS_LIMITS
from tests.federation.cs_client import MatrixClient
from tests.federation.fake_remote import federation_test_config, serving
from tests.harness import make_user

DEFAULT_SIZES = (1, 50, 500)
QUICK_SIZES = (1, 10)
#: A generous bound on each wait (a failure, not a measurement, if exceeded).
WAIT_SECONDS = 600.0
#: How many of B's users join the old room at once during the set-up.
JOIN_CONCURRENCY = 10


async def measure(
    engine: str, postgres_dsn: str, workdir: Path, sizes: tuple[int, ...]
) -> dict[str, Any]:
    async with (
        throwaway_store("sqlite", postgres_dsn) as store_a,
        throwaway_store(engine, postgres_dsn) as store_b,
    ):
        hs_a = Homeserver(
            federation_test_config(workdir / "a", **GENEROUS_LIMITS),
            generate_signing_key("a"),
            store_a,
        )
        hs_b = Homeserver(
            federation_test_config(workdir / "b", **GENEROUS_LIMITS),
            generate_signing_key("b"),
            store_b,
        )
        connector = aiohttp.TCPConnector(ssl=False, limit=JOIN_CONCURRENCY * 2)
        async with (
            serving(hs_a) as url_a,
            serving(hs_b) as url_b,
            aiohttp.ClientSession(connector=connector) as session,
        ):
            creator = await make_user(hs_a, "alice", device_id="DEV")
            alice = MatrixClient(session, url_a, creator.user_id, creator.access_token)
            result: dict[str, Any] = {}
            for n in sizes:
                result[str(n)] = await _one(hs_a, hs_b, alice, session, url_b, n)
            return result


async def _one(
    hs_a: Homeserver,
    hs_b: Homeserver,
    alice: MatrixClient,
    session: aiohttp.ClientSession,
    url_b: str,
    n: int,
) -> dict[str, Any]:
    users = []
    for i in range(n):
        made = await make_user(hs_b, f"follower{n}x{i}", device_id="DEV")
        users.append(MatrixClient(session, url_b, made.user_id, made.access_token))
    old = await alice.create_room(preset="public_chat", room_version="10")
    setup_start = time.perf_counter()
    await users[0].join(old, via=[hs_a.server_name])  # B becomes resident
    gate = asyncio.Semaphore(JOIN_CONCURRENCY)

    async def join(user: MatrixClient) -> None:
        async with gate:
            await user.join(old, via=[hs_a.server_name])

    await asyncio.gather(*(join(u) for u in users[1:]))
    setup_seconds = time.perf_counter() - setup_start
    new = await alice.create_room(
        preset="public_chat",
        room_version="10",
        creation_content={"predecessor": {"room_id": old, "event_id": "$unknown"}},
    )
    await alice.send_state(old, "m.room.tombstone", {"body": "moved", "replacement_room": new})

    follows = hs_b.store.upgrade_follows
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        rows = await follows.for_old_room(old)
        if len(rows) == n and all(r.state == DONE for r in rows):
            break
        if time.monotonic() > deadline:
            states = sorted({r.state for r in rows})
            raise TimeoutError(f"N={n}: {len(rows)} follows queued, states {states}")
        await asyncio.sleep(0.02)
    transition = [
        t
        for t in await hs_b.store.rooms.get_transitions(old)
        if t.to_status == RoomStatus.TOMBSTONED
    ][-1]
    joined = await hs_b.store.state.get_current_members(new, "join")
    assert sum(1 for u in joined if u.endswith(":" + hs_b.server_name)) == n
    last_done = max(r.updated_ts for r in rows)
    return {
        "users": n,
        "tombstone_arrival_to_all_joined_ms": last_done - transition.ts,
        "setup_joins_seconds": round(setup_seconds, 2),
    }
