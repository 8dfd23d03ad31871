"""End-to-end encryption between two of our servers over real HTTPS: alice (server A) uploads
keys, server B learns of them through m.device_list_update (and its resync), bob (server B)
queries and claims them over federation, and bob's to-device message reaches alice's device.
Both engines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from homeserver.storage import Store
from homeserver.streams.device_changes import record_device_change_txn
from tests.federation.e2e_fed_helpers import seed_keys
from tests.federation.h4_helpers import Peer, second_store, two_servers

__all__ = ["second_store"]  # the fixture, used below
T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T | None]], what: str, timeout: float = 30) -> T:
    """Poll ``check`` until it returns something truthy (a generous bound, not a timing)."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def announce_keys(peer: Peer, user_id: str, device_id: str) -> None:
    """What /keys/upload does after storing keys: record the change, queue the EDUs."""
    hs = peer.hs
    async with hs.store.db.transaction("test_announce") as txn:
        await record_device_change_txn(
            txn, hs.store, user_id, [device_id], our_server=hs.server_name, now=hs.clock()
        )


async def test_keys_and_to_device_between_two_servers(
    tmp_path: Path, store: Store, second_store: Store
) -> None:
    async with two_servers(tmp_path, store, second_store) as (a, b):
        alice = await a.user("alice")
        bob = await b.user("bob")
        room_id = await alice.create_room(preset="public_chat")
        assert await bob.join(room_id, via=[a.name]) == room_id

        # alice uploads keys on A; A tells B, which fetches her device list.
        seeded = await seed_keys(a.hs, alice.user_id, "DEV", one_time_key_ids=("AAAA",))
        await announce_keys(a, alice.user_id, "DEV")

        async def alices_list_on_b() -> Any:
            cached = await b.hs.store.remote_device_lists.get(alice.user_id)
            ready = cached is not None and not cached.stale and "DEV" in cached.devices
            return cached if ready else None

        cached = await eventually(alices_list_on_b, "alice's device list on B")
        assert cached.devices["DEV"]["keys"] == seeded.device
        changed = await b.hs.store.device_lists.get_changed_users(
            0, await b.hs.store.device_lists.get_position()
        )
        assert alice.user_id in changed  # bob's clients are told to query her keys

        # bob asks for her keys and claims a one-time key, twice: B asks A over federation.
        answer = await bob.ok("POST", "/keys/query", {"device_keys": {alice.user_id: []}})
        assert answer["failures"] == {}
        assert answer["device_keys"] == {alice.user_id: {"DEV": seeded.device}}
        assert answer["master_keys"] == {alice.user_id: seeded.master}
        assert answer["self_signing_keys"] == {alice.user_id: seeded.self_signing}
        claim = {"one_time_keys": {alice.user_id: {"DEV": "signed_curve25519"}}}
        first = await bob.ok("POST", "/keys/claim", claim)
        second = await bob.ok("POST", "/keys/claim", claim)
        assert list(first["one_time_keys"][alice.user_id]["DEV"]) == ["signed_curve25519:AAAA"]
        assert list(second["one_time_keys"][alice.user_id]["DEV"]) == ["signed_curve25519:FALLBACK"]

        # bob sends alice's device a to-device message; it arrives through A's /sync.
        await alice.sync_once(timeout_ms=0)
        content = {"algorithm": "m.olm.v1.curve25519-aes-sha2", "ciphertext": {"x": {"type": 0}}}
        path = "/sendToDevice/m.room.encrypted/txn1"
        await bob.ok("PUT", path, {"messages": {alice.user_id: {"DEV": content}}})
        await bob.ok("PUT", path, {"messages": {alice.user_id: {"DEV": content}}})  # retried

        received: list[dict[str, Any]] = []

        async def to_device_for_alice() -> bool:
            # alice.call: alice's token belongs to her device "DEV" (h4_helpers.Peer.user).
            response = await alice.sync_once(timeout_ms=500)
            received.extend(response.get("to_device", {}).get("events", []))
            return bool(received)

        await eventually(to_device_for_alice, "the to-device message on A")
        later = await alice.sync_once(timeout_ms=200)  # nothing more comes (no duplicate)
        received.extend(later.get("to_device", {}).get("events", []))
        assert received == [{"type": "m.room.encrypted", "sender": bob.user_id, "content": content}]
