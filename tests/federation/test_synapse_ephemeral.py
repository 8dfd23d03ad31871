"""Typing, read receipts and presence with a real Synapse (issue 15, item 2), on our SQLite and
our PostgreSQL: a Synapse user sees our user typing, his read receipt and his presence, and our
user sees the same of the Synapse user — every piece an m.typing, m.receipt or m.presence EDU
sent by one server and accepted by the other.

Synapse runs with presence on (the interop default is off). Waits poll /sync with generous
deadlines and return as soon as the data is there; they are never timing assertions.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.federation.cs_client import MatrixClient, q
from tests.federation.interop_peer import OurServer, running_our_server
from tests.federation.synapse_harness import SynapseServer, diagnostics, running_synapse
from tests.federation.test_synapse_interop import invite_and_join

ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
WAIT = float(os.environ.get("INTEROP_TIMEOUT", "60"))
_UNLIMITED = {"per_second": 10000, "burst_count": 10000}
#: Everything but a long timeline: ephemeral events and presence are what is looked at.
_FILTER = json.dumps({"room": {"timeline": {"limit": 10}}})


@pytest.fixture(params=ENGINES)
async def ours(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OurServer]:
    config = {"rc_presence": {"per_user": _UNLIMITED}, "rc_typing": _UNLIMITED}
    async with running_our_server(tmp_path / "ours", request.param, config) as server:
        yield server


@pytest.fixture
def synapse(ours: OurServer, tmp_path: Path) -> Iterator[SynapseServer]:
    # One per test, stopped before our server: a Synapse with presence on tells its peers its
    # users went offline when it stops, and waits out its grace period if the peer is gone.
    overrides = {"presence": {"enabled": True}, "rc_presence": {"per_user": _UNLIMITED}}
    with running_synapse(tmp_path / "synapse", overrides) as server:
        yield server


class Watcher:
    """A user's /sync, remembering every ephemeral and presence event seen."""

    def __init__(self, client: MatrixClient) -> None:
        self.client = client
        self.since: str | None = None
        self.ephemeral: list[tuple[str, dict[str, Any]]] = []
        self.presence: list[dict[str, Any]] = []

    async def sync(self) -> None:
        params = [("timeout", "1000"), ("filter", _FILTER)]
        if self.since is not None:
            params.append(("since", self.since))
        body = await self.client.ok("GET", "/sync", None, params)
        self.since = body["next_batch"]
        for room_id, room in body.get("rooms", {}).get("join", {}).items():
            self.ephemeral.extend((room_id, e) for e in room.get("ephemeral", {}).get("events", []))
        self.presence.extend(body.get("presence", {}).get("events", []))

    async def wait(self, found: Callable[[], Any], what: str) -> Any:
        deadline = asyncio.get_running_loop().time() + WAIT
        while not (result := found()):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{self.client.user_id}: no {what} within {WAIT} s")
            await self.sync()
        return result

    def typing(self, room_id: str, user_id: str) -> bool:
        return any(
            r == room_id and e["type"] == "m.typing" and user_id in e["content"]["user_ids"]
            for r, e in self.ephemeral
        )

    def receipt(self, room_id: str, event_id: str, user_id: str) -> bool:
        return any(
            r == room_id
            and e["type"] == "m.receipt"
            and user_id in e["content"].get(event_id, {}).get("m.read", {})
            for r, e in self.ephemeral
        )

    def presence_of(self, user_id: str, status_msg: str) -> dict[str, Any] | None:
        for event in reversed(self.presence):
            content = event["content"]
            if event["sender"] == user_id and content.get("status_msg") == status_msg:
                return dict(content)
        return None


async def _typing(client: MatrixClient, room_id: str) -> None:
    path = f"/rooms/{q(room_id)}/typing/{q(client.user_id)}"
    await client.ok("PUT", path, {"typing": True, "timeout": 30000})


async def _read(client: MatrixClient, room_id: str, event_id: str) -> None:
    await client.ok("POST", f"/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {})


async def _status(client: MatrixClient, message: str) -> None:
    path = f"/presence/{q(client.user_id)}/status"
    await client.ok("PUT", path, {"presence": "online", "status_msg": message})


async def test_typing_receipts_and_presence_both_ways(
    ours: OurServer, synapse: SynapseServer
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        diagnostics(ours, synapse),
        asyncio.timeout(6 * WAIT),
    ):
        alice = await MatrixClient.register(
            session, ours.client_url, ours.registration_secret, "alice"
        )
        bob = await MatrixClient.register(
            session, synapse.client_url, synapse.registration_secret, f"bob_{ours.engine}"
        )
        await alice.sync_once(0)
        await bob.sync_once(0)
        room_id = await alice.create_room(preset="private_chat")
        await invite_and_join(alice, bob, room_id, ours)
        on_ours, on_synapse = Watcher(alice), Watcher(bob)
        await on_ours.sync()
        await on_synapse.sync()

        # Typing: ours → Synapse, Synapse → ours.
        await _typing(alice, room_id)
        await on_synapse.wait(lambda: on_synapse.typing(room_id, alice.user_id), "typing alice")
        await _typing(bob, room_id)
        await on_ours.wait(lambda: on_ours.typing(room_id, bob.user_id), "typing bob")

        # Read receipts on each other's messages.
        from_alice = await alice.send_message(room_id, "read me, bob")
        from_bob = await bob.send_message(room_id, "read me, alice")
        await bob.wait_for_message(room_id, "read me, bob", WAIT)
        await alice.wait_for_message(room_id, "read me, alice", WAIT)
        await _read(bob, room_id, from_alice)
        await on_ours.wait(
            lambda: on_ours.receipt(room_id, from_alice, bob.user_id), "bob's receipt"
        )
        await _read(alice, room_id, from_bob)
        await on_synapse.wait(
            lambda: on_synapse.receipt(room_id, from_bob, alice.user_id), "alice's receipt"
        )

        # Presence, with a status message each.
        await _status(alice, "on our server")
        seen = await on_synapse.wait(
            lambda: on_synapse.presence_of(alice.user_id, "on our server"), "alice's presence"
        )
        assert seen["presence"] == "online"
        await _status(bob, "on Synapse")
        seen = await on_ours.wait(
            lambda: on_ours.presence_of(bob.user_id, "on Synapse"), "bob's presence"
        )
        assert seen["presence"] == "online"
        # And through the presence API of each server.
        status = await alice.ok("GET", f"/presence/{q(bob.user_id)}/status")
        assert status["status_msg"] == "on Synapse"
        status = await bob.ok("GET", f"/presence/{q(alice.user_id)}/status")
        assert status["status_msg"] == "on our server"
