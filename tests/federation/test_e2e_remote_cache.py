"""/keys/query for remote users answered from their cached device lists, and only while those
are known to be complete: a second query asks nothing of the remote server; an applied
m.device_list_update shows in the next answer without a request; a gap makes the list stale and
it is fetched again; a join that makes a remote user start sharing a room with a local user
(their join, or ours through send_join) makes their list stale, so keys that changed while
nobody here shared a room with them are never served; a fresh cache still answers while the
remote server is down. Both engines."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig
from homeserver.storage import Store
from tests.builders import create_public_room
from tests.federation.cs_client import q
from tests.federation.e2e_fed_helpers import cross_signing_key, device_keys, seed_keys
from tests.federation.fake_remote import LOOPBACK_WHITELIST, FakeRemoteServer, ReceivedRequest
from tests.federation.h4_helpers import second_store, two_servers
from tests.federation.received_helpers import Remote, signed_request
from tests.federation.test_e2e_two_servers import announce_keys, eventually
from tests.harness import FIXED_NOW_MS, TestServer, TestUser, make_config

__all__ = ["second_store"]  # the fixture, used below
V1 = "/_matrix/federation/v1"
_txn_ids = itertools.count(1)


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return make_config(
        tmp_path,
        federation_verify_certificates=False,
        ip_range_whitelist=LOOPBACK_WHITELIST,
        federation={"client_timeout": "10s"},
    )


@dataclass
class RemoteSide:
    """The remote server: a FakeRemoteServer answering user/devices and user/keys/query from
    ``devices`` (user → device → keys) and a Remote (same name and key) that joins our rooms."""

    fake: FakeRemoteServer
    remote: Remote
    devices: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    stream_ids: dict[str, int] = field(default_factory=dict)

    def user(self, localpart: str) -> str:
        return self.remote.user(localpart)

    def set_devices(self, user_id: str, *device_ids: str) -> None:
        self.devices[user_id] = {d: device_keys(user_id, d) for d in device_ids}
        self.stream_ids[user_id] = self.stream_ids.get(user_id, 0) + 1

    def requests(self) -> list[str]:
        """What our server asked: "devices <user>" and "query" requests, in order."""
        asked = []
        for r in self.fake.received:
            if r.path.startswith(V1 + "/user/devices/"):
                asked.append("devices " + r.params["user_id"])
            elif r.path == V1 + "/user/keys/query":
                asked.append("query")
        return asked

    async def on_user_devices(self, request: ReceivedRequest) -> Any:
        user_id = request.params["user_id"]
        return {
            "user_id": user_id,
            "stream_id": self.stream_ids.get(user_id, 0),
            "devices": [
                {"device_id": d, "keys": keys} for d, keys in self.devices.get(user_id, {}).items()
            ],
            "master_key": cross_signing_key(user_id, "master", "M-" + user_id),
        }

    async def on_keys_query(self, request: ReceivedRequest) -> Any:
        asked = request.json["device_keys"]
        return {"device_keys": {u: self.devices.get(u, {}) for u in asked}}


@pytest.fixture
async def side(tmp_path: Path, server: TestServer) -> AsyncIterator[RemoteSide]:
    async with FakeRemoteServer(tmp_path) as fake:
        remote = Remote(fake.server_name)
        remote.signing_key = fake.signing_key
        await remote.seed_key(server.hs)
        remote_side = RemoteSide(fake, remote)
        fake.add_handler("GET", V1 + "/user/devices/{user_id}", remote_side.on_user_devices)
        fake.add_handler("POST", V1 + "/user/keys/query", remote_side.on_keys_query)
        try:
            yield remote_side
        finally:
            await server.hs.federation_client.close()


async def query(server: TestServer, requester: TestUser, *users: str) -> dict[str, Any]:
    return await server.hs.e2e_keys.query(requester.user_id, {u: [] for u in users}, 10_000)


def device_ids(answer: dict[str, Any], user_id: str) -> set[str]:
    return set(answer["device_keys"].get(user_id, {}))


async def member_event(
    server: TestServer, side: RemoteSide, room_id: str, user_id: str, content: dict[str, Any]
) -> None:
    _, pdu = await side.remote.build(
        server.hs, room_id, type="m.room.member", sender=user_id, state_key=user_id, content=content
    )
    await side.remote.receive(server.hs, pdu)


async def send_edus(server: TestServer, side: RemoteSide, edus: list[dict[str, Any]]) -> None:
    body = {"origin": side.remote.name, "origin_server_ts": FIXED_NOW_MS, "pdus": [], "edus": edus}
    path = f"{V1}/send/{q(f'cache{next(_txn_ids)}')}"
    assert await signed_request(server, side.remote, "PUT", path, body) == (200, {"pdus": {}})


def device_update(user_id: str, device_id: str, stream_id: int, prev_id: int) -> dict[str, Any]:
    content = {
        "user_id": user_id,
        "device_id": device_id,
        "stream_id": stream_id,
        "prev_id": [prev_id],
        "keys": device_keys(user_id, device_id),
    }
    return {"edu_type": "m.device_list_update", "content": content}


async def is_stale(server: TestServer, user_id: str) -> bool | None:
    cached = await server.hs.store.remote_device_lists.get(user_id)
    return None if cached is None else cached.stale


# --- the cache answers ---------------------------------------------------------------------------
async def test_second_query_is_answered_from_the_cache(
    server: TestServer, side: RemoteSide
) -> None:
    alice = await server.register("alice")
    r = side.user("r")
    side.set_devices(r, "R1", "R2")
    room_alice = await create_public_room(server, alice)
    await member_event(server, side, room_alice, r, {"membership": "join"})

    first = await query(server, alice, r)
    assert side.requests() == [f"devices {r}"]  # untracked: the whole list, then kept
    second = await query(server, alice, r)
    assert side.requests() == [f"devices {r}"]  # nothing asked
    assert first == second
    assert second["failures"] == {}
    assert second["device_keys"] == {r: {d: device_keys(r, d) for d in ("R1", "R2")}}
    assert second["master_keys"] == {r: cross_signing_key(r, "master", "M-" + r)}

    # Someone nobody here shares a room with is asked of their server, every time.
    stranger = side.user("stranger")
    side.set_devices(stranger, "S1")
    answer = await query(server, alice, r, stranger)
    answer = await query(server, alice, r, stranger)
    assert side.requests() == [f"devices {r}", "query", "query"]
    assert [req.json for req in side.fake.requests_to(V1 + "/user/keys/query")] == [
        {"device_keys": {stranger: []}}
    ] * 2
    assert device_ids(answer, r) == {"R1", "R2"} and device_ids(answer, stranger) == {"S1"}

    # Named devices of a cached user: the cache answers those only.
    named = await server.hs.e2e_keys.query(alice.user_id, {r: ["R2", "NOPE"]}, 10_000)
    assert named["device_keys"] == {r: {"R2": device_keys(r, "R2")}}
    assert len(side.requests()) == 3


async def test_device_list_update_shows_without_asking_and_a_gap_refetches(
    server: TestServer, side: RemoteSide
) -> None:
    alice = await server.register("alice")
    r = side.user("r")
    side.set_devices(r, "R1")
    room_alice = await create_public_room(server, alice)
    await member_event(server, side, room_alice, r, {"membership": "join"})
    await query(server, alice, r)
    held = side.stream_ids[r]

    # An update that follows what we hold is applied; the next answer has it, unasked.
    await send_edus(server, side, [device_update(r, "R2", held + 1, held)])
    answer = await query(server, alice, r)
    assert device_ids(answer, r) == {"R1", "R2"}
    assert side.requests() == [f"devices {r}"]

    # A gap: stale; the background resync fetches the list again, and it answers after that.
    side.set_devices(r, "R3")
    side.stream_ids[r] = held + 10
    await send_edus(server, side, [device_update(r, "R3", held + 10, held + 5)])
    await server.hs.e2e_edus.wait_for_resyncs()
    assert side.requests() == [f"devices {r}"] * 2
    assert await is_stale(server, r) is False
    assert device_ids(await query(server, alice, r), r) == {"R3"}
    assert side.requests() == [f"devices {r}"] * 2

    # Stale when asked (the resync failed, say): the query fetches the list itself.
    side.set_devices(r, "R4")
    await server.hs.store.remote_device_lists.mark_stale(r)
    assert device_ids(await query(server, alice, r), r) == {"R4"}
    assert side.requests() == [f"devices {r}"] * 3
    assert await is_stale(server, r) is False


async def test_cache_answers_while_the_remote_server_is_down(
    server: TestServer, side: RemoteSide
) -> None:
    alice = await server.register("alice")
    r = side.user("r")
    side.set_devices(r, "R1")
    room_alice = await create_public_room(server, alice)
    await member_event(server, side, room_alice, r, {"membership": "join"})
    before = await query(server, alice, r)
    await side.fake.stop()

    assert await query(server, alice, r) == before
    # A user the cache cannot answer: the cached part still comes, the server is a failure.
    stranger = side.user("stranger")
    mixed = await query(server, alice, r, stranger)
    assert mixed["device_keys"] == before["device_keys"]
    assert list(mixed["failures"]) == [side.remote.name]
    alone = await query(server, alice, stranger)
    assert alone["device_keys"] == {} and list(alone["failures"]) == [side.remote.name]


# --- joins invalidate ----------------------------------------------------------------------------
async def test_remote_users_rejoin_makes_the_cached_list_stale(
    server: TestServer, side: RemoteSide
) -> None:
    alice = await server.register("alice")
    r = side.user("r")
    side.set_devices(r, "OLD")
    room_id = await create_public_room(server, alice)
    await member_event(server, side, room_id, r, {"membership": "join"})
    await query(server, alice, r)
    # A profile change is no new join: the list stays fresh.
    await member_event(server, side, room_id, r, {"membership": "join", "displayname": "R"})
    assert await is_stale(server, r) is False

    # r leaves; its devices change and nobody tells us (we share no room with r any more).
    await member_event(server, side, room_id, r, {"membership": "leave"})
    side.set_devices(r, "NEW")
    assert await is_stale(server, r) is False  # still held, but not served: nobody shares
    unshared = await query(server, alice, r)
    assert device_ids(unshared, r) == {"NEW"} and side.requests()[-1] == "query"

    # r joins again: the list is stale at once and fetched again when asked.
    await member_event(server, side, room_id, r, {"membership": "join"})
    assert await is_stale(server, r) is True
    assert device_ids(await query(server, alice, r), r) == {"NEW"}
    assert side.requests() == [f"devices {r}", "query", f"devices {r}"]


async def test_join_while_sharing_another_room_keeps_the_list(
    server: TestServer, side: RemoteSide
) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    r = side.user("r")
    side.set_devices(r, "R1")
    first_room = await create_public_room(server, alice)
    await member_event(server, side, first_room, r, {"membership": "join"})
    await query(server, alice, r)

    # r joins bob's room while still sharing alice's: updates kept coming, nothing is stale.
    room_bob = await create_public_room(server, bob)
    await member_event(server, side, room_bob, r, {"membership": "join"})
    assert await is_stale(server, r) is False
    # r leaves alice's room and comes back while sharing bob's: still fresh.
    await member_event(server, side, first_room, r, {"membership": "leave"})
    await member_event(server, side, first_room, r, {"membership": "join"})
    assert await is_stale(server, r) is False
    await query(server, alice, r)
    assert side.requests() == [f"devices {r}"]


async def test_local_rejoin_through_send_join_makes_the_cached_list_stale(
    tmp_path: Path, store: Store, second_store: Store
) -> None:
    async with two_servers(tmp_path, store, second_store) as (a, b):
        alice = await a.user("alice")
        bob = await b.user("bob")
        room_id = await alice.create_room(preset="public_chat")
        assert await bob.join(room_id, via=[a.name]) == room_id
        await seed_keys(a.hs, alice.user_id, "DEV")
        await announce_keys(a, alice.user_id, "DEV")

        async def alices_list_on_b() -> Any:
            cached = await b.hs.store.remote_device_lists.get(alice.user_id)
            return cached if cached and not cached.stale and "DEV" in cached.devices else None

        await eventually(alices_list_on_b, "alice's device list on B")
        asked = {"device_keys": {alice.user_id: []}}
        answer = await bob.ok("POST", "/keys/query", asked)
        assert set(answer["device_keys"][alice.user_id]) == {"DEV"}

        # Every user of B leaves; alice gets a new device, which A tells nobody on B.
        await bob.leave(room_id)

        async def bob_gone_on_a() -> bool:
            mates = await a.hs.store.device_lists.get_users_sharing_a_room(alice.user_id)
            return bob.user_id not in mates

        await eventually(bob_gone_on_a, "A seeing bob leave")
        await a.hs.store.users.upsert_device(alice.user_id, "NEW")
        await seed_keys(a.hs, alice.user_id, "NEW")
        await announce_keys(a, alice.user_id, "NEW")
        held = await b.hs.store.remote_device_lists.get(alice.user_id)
        assert held is not None and not held.stale and set(held.devices) == {"DEV"}

        # bob joins again (send_join through A): B's copy of alice's list is stale at once,
        # and the next query fetches it instead of answering the old keys.
        assert await bob.join(room_id, via=[a.name]) == room_id
        assert await b.hs.store.remote_device_lists.get(alice.user_id) == replace(held, stale=True)
        answer = await bob.ok("POST", "/keys/query", asked)
        assert set(answer["device_keys"][alice.user_id]) == {"DEV", "NEW"}
        held = await b.hs.store.remote_device_lists.get(alice.user_id)
        assert held is not None and not held.stale and set(held.devices) == {"DEV", "NEW"}
