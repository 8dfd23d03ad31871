"""Restricted rooms with a real Synapse on loopback, both ways, on our SQLite and PostgreSQL.

(ours) A Synapse user who is in our space joins our room restricted to that space through us:
    we name our authorising user in make_join and sign the join on send_join; Synapse accepts
    the signed copy. A Synapse user in no allowed room is refused.
(theirs) Our user, who joined a Synapse-hosted space, joins a Synapse-hosted room restricted to
    it: Synapse names its authorising user and signs; we keep the signed copy. Our user in no
    allowed room gets Synapse's 403.
(knocks) Each side's user knocks on the other side's knock room (make_knock / send_knock both
    ways), is invited and joins.

One Synapse for the module (users get fresh names per test); waits poll /sync with generous
deadlines and return as soon as the data is there.
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
from tests.federation.test_synapse_interop import (
    ENGINES,
    TIMEOUT,
    exchange_messages,
    wait_member,
)

VIA = "join_authorised_via_users_server"
_names = itertools.count()


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    with running_synapse(tmp_path_factory.mktemp("synapse-restricted")) as server:
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


def restricted_to(space: str) -> list[dict[str, Any]]:
    allow = [{"type": "m.room_membership", "room_id": space}]
    content = {"join_rule": "restricted", "allow": allow}
    return [{"type": "m.room.join_rules", "state_key": "", "content": content}]


async def join_error(client: MatrixClient, room_id: str, server: str) -> tuple[int, Any]:
    return await client.call("POST", f"/join/{q(room_id)}", {}, [("server_name", server)])


async def test_synapse_user_joins_our_restricted_room(
    ours: OurServer, synapse: SynapseServer, session: aiohttp.ClientSession
) -> None:
    async with diagnostics(ours, synapse):
        alice = await register(session, ours.client_url, ours.registration_secret, "alice")
        bob = await register(session, synapse.client_url, synapse.registration_secret, "bob")
        eve = await register(session, synapse.client_url, synapse.registration_secret, "eve")
        space = await alice.create_room(preset="public_chat", room_version="10")
        room_id = await alice.create_room(
            preset="private_chat", room_version="10", initial_state=restricted_to(space)
        )
        assert await bob.join(space, via=[ours.server_name]) == space

        assert await bob.join(room_id, via=[ours.server_name]) == room_id
        await wait_member(alice, room_id, bob.user_id, "join")
        join = alice.find_event(
            room_id, "m.room.member", lambda e: e.get("state_key") == bob.user_id
        )
        assert join is not None and join["content"][VIA] == alice.user_id
        await exchange_messages(alice, bob, room_id, "restricted/ours")

        status, body = await join_error(eve, room_id, ours.server_name)
        assert status == 403, body


async def test_our_user_joins_synapse_restricted_room(
    ours: OurServer, synapse: SynapseServer, session: aiohttp.ClientSession
) -> None:
    async with diagnostics(ours, synapse):
        alice = await register(session, ours.client_url, ours.registration_secret, "alice")
        carol = await register(session, ours.client_url, ours.registration_secret, "carol")
        bob = await register(session, synapse.client_url, synapse.registration_secret, "bob")
        space = await bob.create_room(preset="public_chat", room_version="10")
        room_id = await bob.create_room(
            preset="private_chat", room_version="10", initial_state=restricted_to(space)
        )
        assert await alice.join(space, via=[synapse.server_name]) == space
        await wait_member(bob, space, alice.user_id, "join")

        assert await alice.join(room_id, via=[synapse.server_name]) == room_id
        await wait_member(bob, room_id, alice.user_id, "join")
        join = bob.find_event(
            room_id, "m.room.member", lambda e: e.get("state_key") == alice.user_id
        )
        assert join is not None and join["content"][VIA] == bob.user_id
        await exchange_messages(alice, bob, room_id, "restricted/theirs")

        status, body = await join_error(carol, room_id, synapse.server_name)
        assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), body


def knock_rule(rule: str = "knock") -> list[dict[str, Any]]:
    return [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": rule}}]


async def synced(user: MatrixClient) -> dict[str, Any]:
    status, body = await user.call("GET", "/sync")
    assert status == 200, body
    return body


def knock_state_types(body: dict[str, Any], room_id: str) -> list[str]:
    return [e["type"] for e in body["rooms"]["knock"][room_id]["knock_state"]["events"]]


async def test_knocks_both_ways(
    ours: OurServer, synapse: SynapseServer, session: aiohttp.ClientSession
) -> None:
    async with diagnostics(ours, synapse):
        alice = await register(session, ours.client_url, ours.registration_secret, "alice")
        bob = await register(session, synapse.client_url, synapse.registration_secret, "bob")
        our_room = await alice.create_room(
            preset="private_chat", room_version="10", initial_state=knock_rule()
        )
        their_room = await bob.create_room(
            preset="private_chat", room_version="10", initial_state=knock_rule()
        )

        # Synapse's user knocks on our room; our user lets him in.
        path = f"/knock/{q(our_room)}"
        await bob.ok("POST", path, {"reason": "from Synapse"}, [("via", ours.server_name)])
        await wait_member(alice, our_room, bob.user_id, "knock")
        # Synapse's /sync shows it under rooms.knock with the stripped state we answered.
        assert "m.room.join_rules" in knock_state_types(await synced(bob), our_room)
        await alice.invite(our_room, bob.user_id)
        await bob.wait_for_invite(our_room, TIMEOUT)
        assert await bob.join(our_room, via=[ours.server_name]) == our_room
        await wait_member(alice, our_room, bob.user_id, "join")

        # Our user knocks on Synapse's room; Synapse's user lets her in.
        path = f"/knock/{q(their_room)}"
        await alice.ok("POST", path, {"reason": "from ours"}, [("via", synapse.server_name)])
        await wait_member(bob, their_room, alice.user_id, "knock")
        # Ours shows it under rooms.knock with the stripped state Synapse answered, until the
        # invite moves the room to rooms.invite.
        types = knock_state_types(await synced(alice), their_room)
        assert types[0] == "m.room.create" and "m.room.join_rules" in types
        assert types[-1] == "m.room.member"
        await bob.invite(their_room, alice.user_id)
        await alice.wait_for_invite(their_room, TIMEOUT)
        body = await synced(alice)
        assert their_room not in body["rooms"]["knock"] and their_room in body["rooms"]["invite"]
        assert await alice.join(their_room, via=[synapse.server_name]) == their_room
        await wait_member(bob, their_room, alice.user_id, "join")
