"""Space hierarchies across a real Synapse on loopback, on our SQLite and PostgreSQL.

Our space holds our own room and a room on Synapse. Our user's ``/hierarchy`` summarises our
rooms from our state and asks Synapse (``GET /_matrix/federation/v1/hierarchy``) about its
room; a room summary of the Synapse room goes the same way. Then the Synapse user, having
joined our space, asks Synapse for it: Synapse asks us about our room, which it is not in, and
shows what we answered.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.federation.cs_client import MatrixClient, q
from tests.federation.interop_peer import OurServer, running_our_server
from tests.federation.synapse_harness import SynapseServer, diagnostics, running_synapse
from tests.federation.test_synapse_interop import ENGINES, wait_member

V1 = "/_matrix/client/v1"
_names = itertools.count()


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    with running_synapse(tmp_path_factory.mktemp("synapse-hierarchy")) as server:
        yield server


@pytest.fixture(params=ENGINES)
async def ours(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OurServer]:
    async with running_our_server(tmp_path / "ours", request.param) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def register(
    session: aiohttp.ClientSession, url: str, secret: str, localpart: str
) -> MatrixClient:
    client = await MatrixClient.register(session, url, secret, f"{localpart}{next(_names)}")
    await client.sync_once(0)
    return client


async def hierarchy(user: MatrixClient, space: str) -> dict[str, Any]:
    status, body = await user.call("GET", f"{V1}/rooms/{q(space)}/hierarchy")
    assert status == 200, body
    return body


def by_id(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {room["room_id"]: room for room in body["rooms"]}


async def test_space_holding_a_synapse_room(
    ours: OurServer, synapse: SynapseServer, session: aiohttp.ClientSession
) -> None:
    async with diagnostics(ours, synapse):
        alice = await register(session, ours.client_url, ours.registration_secret, "alice")
        bob = await register(session, synapse.client_url, synapse.registration_secret, "bob")
        theirs = await bob.create_room(preset="public_chat", name="On Synapse", topic="hi")
        mine = await alice.create_room(preset="public_chat", name="Ours")
        space = await alice.create_room(
            preset="public_chat", name="Space", creation_content={"type": "m.space"}
        )
        await alice.send_state(space, "m.space.child", {"via": [ours.server_name]}, mine)
        link = {"via": [synapse.server_name], "order": "a"}
        await alice.send_state(space, "m.space.child", link, theirs)

        body = await hierarchy(alice, space)
        assert [r["room_id"] for r in body["rooms"]] == [space, theirs, mine]
        remote = by_id(body)[theirs]
        assert (remote["name"], remote["topic"]) == ("On Synapse", "hi")
        assert remote["num_joined_members"] == 1 and remote["join_rule"] == "public"
        assert remote["children_state"] == []

        status, summary = await alice.call(
            "GET", f"{V1}/room_summary/{q(theirs)}", params=[("via", synapse.server_name)]
        )
        assert status == 200, summary
        assert (summary["name"], summary["membership"]) == ("On Synapse", "leave")

        # The other way: Synapse asks us about our room in the space it now knows.
        assert await bob.join(space, via=[ours.server_name]) == space
        await wait_member(alice, space, bob.user_id, "join")
        seen = by_id(await hierarchy(bob, space))
        assert set(seen) == {space, theirs, mine}, seen
        assert seen[mine]["name"] == "Ours" and seen[mine]["num_joined_members"] == 1
