"""Typing and presence when two processes serve one server (both engines): each service is
given a loopback in place of the Redis bus, so what one publishes the other receives.

Typing set on A is seen on B (a replica that sends no EDU), its end on A reaches B, and a
position from A is understood by B. Presence: a user syncing on B stays online through A's
sweep as long as B says so, and goes offline through A's once the sync ends."""

from __future__ import annotations

import asyncio
from typing import Any

from signedjson.key import generate_signing_key

from homeserver.ephemeral.presence import SYNC_ONLINE_TIMEOUT_MS, PresenceService
from homeserver.ephemeral.typing import TypingService
from homeserver.events.builder import Signer
from homeserver.storage import Store
from homeserver.streams.notifier import Notifier
from tests.builders import build_room

SERVER = "test.example"
ALICE = f"@alice:{SERVER}"


class Loopback:
    """The part of ``RedisBus`` the services use; what one publishes the peer's handlers get."""

    def __init__(self) -> None:
        self.peer: Loopback | None = None
        self.handlers: dict[str, Any] = {}
        self.sent: list[dict[str, Any]] = []

    def subscribe(self, item_type: str, handler: Any) -> None:
        self.handlers[item_type] = handler

    def publish(self, item: dict[str, Any]) -> None:
        self.sent.append(item)
        assert self.peer is not None
        handler = self.peer.handlers.get(item["t"])
        if handler is not None:
            handler(dict(item))


def linked() -> tuple[Loopback, Loopback]:
    a, b = Loopback(), Loopback()
    a.peer, b.peer = b, a
    return a, b


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        self.now += 1
        return self.now


async def test_typing_and_syncing_users_are_shared_with_the_other_process(store: Store) -> None:
    """One test for both (one database each engine: the suite's time budget)."""
    await _typing_is_copied(store)
    await _a_user_syncing_on_b_stays_online_through_the_sweep_of_a(store)


async def _typing_is_copied(store: Store) -> None:
    clock = Clock()
    room_id = await build_room(
        store, Signer(SERVER, generate_signing_key("k")), ALICE, now=clock(), clock=clock
    )
    bus_a, bus_b = linked()
    a = TypingService(store, Notifier(), clock, SERVER, replication=bus_a)  # type: ignore[arg-type]
    b = TypingService(store, Notifier(), clock, SERVER, replication=bus_b)  # type: ignore[arg-type]
    try:
        since = a.position
        await a.set_typing(ALICE, room_id, ALICE, {"typing": True, "timeout": 300})
        assert b.typers(room_id) == [ALICE]
        assert b.changes([room_id], since) == {room_id: [ALICE]}  # A's position, read by B
        # A's timeout (0.3 s) ends it on A, and A tells B long before B's replica would expire.
        for _ in range(100):
            if not b.typers(room_id):
                break
            await asyncio.sleep(0.02)
        assert a.typers(room_id) == [] and b.typers(room_id) == []
        assert [item["s"] for item in bus_a.sent] == [0.3, None]
        assert bus_b.sent == []  # B copied, never originated (so sent no EDU either)

        # Set on B, stopped on A: the process that saw the start need not see the end.
        await b.set_typing(ALICE, room_id, ALICE, {"typing": True, "timeout": 30_000})
        assert a.typers(room_id) == [ALICE]
        await a.set_typing(ALICE, room_id, ALICE, {"typing": False})
        assert a.typers(room_id) == [] and b.typers(room_id) == []
    finally:
        await a.stop()
        await b.stop()


async def _a_user_syncing_on_b_stays_online_through_the_sweep_of_a(store: Store) -> None:
    clock = Clock()
    bus_a, bus_b = linked()
    a = PresenceService(store, Notifier(), clock, SERVER, replication=bus_a)  # type: ignore[arg-type]
    b = PresenceService(store, Notifier(), clock, SERVER, replication=bus_b)  # type: ignore[arg-type]

    async def presence() -> str:
        return str((await a.get_presence(ALICE, ALICE))["presence"])

    async with b.syncing(ALICE, "online"):
        assert await presence() == "online"
        clock.now += 2 * SYNC_ONLINE_TIMEOUT_MS
        b.share_syncing()  # B's sweep, every few seconds
        await a.handle_timeouts()
        assert await presence() == "online"
    # The sync ended on B: no more word from it, and A's sweep takes the user offline.
    clock.now += 2 * SYNC_ONLINE_TIMEOUT_MS
    await a.handle_timeouts()
    assert await presence() == "offline"
