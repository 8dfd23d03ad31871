"""/sync never misses an event while many rooms are written at once (issue 17): writers commit
out of stream order (some linger between taking their orderings and committing),
a client follows ``next_batch`` the whole time, and in the end has seen every event exactly
once. A token handed out at the newest committed ordering, rather than the persisted-up-to
position, would skip the events still lingering below it."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from homeserver.storage import Transaction
from homeserver.storage import persist as persist_module
from tests.builders import make_room, say
from tests.harness import TestServer
from tests.sync.helpers import sync

#: three writers leave a connection of the test pool (4) to the syncing client.
WRITERS = 3
MESSAGES_EACH = 10
FILTER = json.dumps({"room": {"timeline": {"limit": 500}}})


async def test_sync_sees_every_event_once_under_concurrent_writes(
    server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hs = server.hs
    alice = await server.register("alice")
    rooms = [await make_room(hs, alice.user_id) for _ in range(5)]
    token = (await sync(server, alice, filter=FILTER))["next_batch"]
    rng = random.Random(17)
    real_allocate = persist_module.allocate_txn

    async def lingering_allocate(txn: Transaction, stream: str, count: int = 1) -> list[int]:
        positions = await real_allocate(txn, stream, count)
        # Most commit at once, some linger long enough for later ones to pass them.
        delay = rng.choice((0.0, 0.005, 0.15))
        txn.call_before_commit(lambda: asyncio.sleep(delay))
        return positions

    monkeypatch.setattr(persist_module, "allocate_txn", lingering_allocate)
    sent: list[str] = []
    seen: list[str] = []
    writing = True

    async def writer(n: int) -> None:
        for i in range(MESSAGES_EACH):
            event = await say(hs, rng.choice(rooms), alice.user_id, f"{n}.{i}")
            sent.append(event.event_id)
            await asyncio.sleep(rng.random() * 0.02)

    async def reader() -> None:
        nonlocal token
        while True:
            last_round = not writing
            body: dict[str, Any] = await sync(
                server, alice, since=token, timeout="0", filter=FILTER
            )
            for room in body.get("rooms", {}).get("join", {}).values():
                assert not room["timeline"]["limited"]
                seen.extend(
                    e["event_id"]
                    for e in room["timeline"]["events"]
                    if e["type"] == "m.room.message"
                )
            token = body["next_batch"]
            if last_round:
                return
            await asyncio.sleep(rng.random() * 0.01)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(n) for n in range(WRITERS)))
    writing = False
    await reading
    assert len(sent) == WRITERS * MESSAGES_EACH
    assert sorted(seen) == sorted(sent)
