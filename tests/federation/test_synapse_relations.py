"""Threads and edits with a real Synapse (issue 16, item 4), on our SQLite and our PostgreSQL:
a Synapse user's thread replies and edits, received over federation, are aggregated on our side
(``unsigned.m.relations`` on /event, /relations, /threads), and ours are on Synapse's; his
redaction of a reply, received over federation, takes it out of the thread here.

Waits poll /sync with generous deadlines and return as soon as the data is there; they are
never timing assertions.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
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
V1 = "/_matrix/client/v1"


@pytest.fixture(params=ENGINES)
async def ours(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OurServer]:
    async with running_our_server(tmp_path / "ours", request.param) as server:
        yield server


@pytest.fixture
def synapse(ours: OurServer, tmp_path: Path) -> Iterator[SynapseServer]:
    with running_synapse(tmp_path / "synapse") as server:
        yield server


async def _send(client: MatrixClient, room_id: str, content: dict[str, Any]) -> str:
    txn = f"rel-{time.time_ns()}"
    path = f"/rooms/{q(room_id)}/send/m.room.message/{txn}"
    return str((await client.ok("PUT", path, content))["event_id"])


async def _reply(client: MatrixClient, room_id: str, root: str, text: str) -> str:
    relates = {"rel_type": "m.thread", "event_id": root}
    return await _send(
        client, room_id, {"msgtype": "m.text", "body": text, "m.relates_to": relates}
    )


async def _edit(client: MatrixClient, room_id: str, target: str, text: str) -> str:
    content = {
        "msgtype": "m.text",
        "body": f"* {text}",
        "m.new_content": {"msgtype": "m.text", "body": text},
        "m.relates_to": {"rel_type": "m.replace", "event_id": target},
    }
    return await _send(client, room_id, content)


async def _event(client: MatrixClient, room_id: str, event_id: str) -> dict[str, Any]:
    return dict(await client.ok("GET", f"/rooms/{q(room_id)}/event/{q(event_id)}"))


def _relations(event: dict[str, Any]) -> dict[str, Any]:
    return dict(event.get("unsigned", {}).get("m.relations", {}))


async def test_synapse_thread_replies_and_edits_aggregated_here(
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

        root = await alice.send_message(room_id, "thread root")
        await bob.wait_for_message(room_id, "thread root", WAIT)
        first = await _reply(bob, room_id, root, "bob's first reply")
        second = await _reply(bob, room_id, root, "bob's second reply")
        edit = await _edit(bob, room_id, second, "bob's second reply, edited")
        own = await bob.send_message(room_id, "bob's own message")
        own_edit = await _edit(bob, room_id, own, "bob's own message, edited")
        await alice.wait_for(
            lambda: alice.find_event(
                room_id, "m.room.message", lambda e: e["event_id"] == own_edit
            ),
            WAIT,
            "bob's last edit on our server",
        )

        # On our server: the thread summary counts bob's replies, its latest carrying his edit.
        thread = _relations(await _event(alice, room_id, root))["m.thread"]
        assert thread["count"] == 2 and thread["current_user_participated"] is True
        assert thread["latest_event"]["event_id"] == second
        assert _relations(thread["latest_event"])["m.replace"]["event_id"] == edit
        assert _relations(await _event(alice, room_id, own))["m.replace"]["event_id"] == own_edit
        listed = await alice.ok("GET", f"{V1}/rooms/{q(room_id)}/relations/{q(root)}/m.thread")
        assert [e["event_id"] for e in listed["chunk"]] == [second, first]
        threads = await alice.ok("GET", f"{V1}/rooms/{q(room_id)}/threads")
        assert [e["event_id"] for e in threads["chunk"]] == [root]

        # And the other way: our user's reply in the thread is aggregated by Synapse.
        ours_reply = await _reply(alice, room_id, root, "alice's reply")
        await bob.wait_for(
            lambda: bob.find_event(
                room_id, "m.room.message", lambda e: e["event_id"] == ours_reply
            ),
            WAIT,
            "alice's reply on Synapse",
        )
        thread = _relations(await _event(bob, room_id, root))["m.thread"]
        assert thread["count"] == 3 and thread["latest_event"]["event_id"] == ours_reply

        # bob redacts his second reply on Synapse: on ours it drops out of the thread.
        path = f"/rooms/{q(room_id)}/redact/{q(second)}/redact-{time.time_ns()}"
        redaction = str((await bob.ok("PUT", path, {}))["event_id"])
        await alice.wait_for(
            lambda: alice.find_event(
                room_id, "m.room.redaction", lambda e: e["event_id"] == redaction
            ),
            WAIT,
            "bob's redaction on our server",
        )
        assert (await _event(alice, room_id, second))["content"] == {}
        thread = _relations(await _event(alice, room_id, root))["m.thread"]
        assert thread["count"] == 2 and thread["latest_event"]["event_id"] == ours_reply
        listed = await alice.ok("GET", f"{V1}/rooms/{q(room_id)}/relations/{q(root)}/m.thread")
        assert [e["event_id"] for e in listed["chunk"]] == [ours_reply, first]
