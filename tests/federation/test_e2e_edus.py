"""End-to-end encryption EDUs received in /send: m.direct_to_device delivered to the inbox
exactly once however often it is resent, m.device_list_update applied or resynced, and
m.signing_key_update stored; EDUs naming another server's users refused; both engines."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from homeserver.app import Homeserver
from homeserver.federation.client import FederationUnreachable
from tests.builders import create_public_room
from tests.federation.cs_client import q
from tests.federation.e2e_fed_helpers import cross_signing_key, device_keys
from tests.federation.received_helpers import Remote, signed_request
from tests.harness import FIXED_NOW_MS, TestServer, TestUser
from tests.sync.helpers import sync
from tests.to_device.helpers import to_device_events

_txn_ids = itertools.count(1)


async def send_edus(
    server: TestServer, remote: Remote, edus: list[Any], txn_id: str | None = None
) -> str:
    """PUT /send with these EDUs (and no PDUs) from ``remote``; returns the transaction ID."""
    txn_id = txn_id or f"t{next(_txn_ids)}"
    body = {"origin": remote.name, "origin_server_ts": FIXED_NOW_MS, "pdus": [], "edus": edus}
    path = f"/_matrix/federation/v1/send/{q(txn_id)}"
    status, answer = await signed_request(server, remote, "PUT", path, body)
    assert (status, answer) == (200, {"pdus": {}})
    return txn_id


def to_device_edu(sender: str, message_id: str, messages: dict[str, Any]) -> dict[str, Any]:
    return {
        "edu_type": "m.direct_to_device",
        "content": {
            "sender": sender,
            "type": "m.room_key_request",
            "message_id": message_id,
            "messages": messages,
        },
    }


async def inbox(hs: Homeserver, user: TestUser | tuple[str, str]) -> list[dict[str, Any]]:
    user_id, device_id = (user.user_id, user.device_id) if isinstance(user, TestUser) else user
    messages = await hs.store.device_inbox.get_messages(user_id, device_id, 0, 2**62, 100)
    return [m for _, m in messages]


# --- m.direct_to_device ------------------------------------------------------------------------
async def test_to_device_delivered_once_when_resent(server: TestServer) -> None:
    hs = server.hs
    alice = await server.register("alice")
    laptop = await server.login_device(alice, "LAPTOP")
    remote = Remote()
    await remote.seed_key(hs)
    first = await sync(server, alice)
    sender = remote.user("r")
    edu = to_device_edu(
        sender,
        "m1",
        {alice.user_id: {"*": {"n": "all"}, alice.device_id: {"n": "phone"}, "GONE": {"n": 0}}},
    )
    txn_id = await send_edus(server, remote, [edu])
    await send_edus(server, remote, [edu], txn_id)  # the same transaction retried
    await send_edus(server, remote, [edu])  # the same message in a new transaction
    got = await sync(server, alice, since=first["next_batch"])
    assert to_device_events(got) == [
        {"type": "m.room_key_request", "sender": sender, "content": {"n": "phone"}}
    ]
    assert [m["content"] for m in await inbox(hs, laptop)] == [{"n": "all"}]
    assert await inbox(hs, (alice.user_id, "GONE")) == []
    # A new message ID is a new message.
    await send_edus(server, remote, [to_device_edu(sender, "m2", {alice.user_id: {"*": {"n": 2}}})])
    again = await sync(server, alice, since=got["next_batch"])
    assert [e["content"] for e in to_device_events(again)] == [{"n": 2}]


async def test_to_device_from_another_servers_user_or_for_others_is_dropped(
    server: TestServer,
) -> None:
    hs = server.hs
    alice = await server.register("alice")
    remote = Remote()
    await remote.seed_key(hs)
    spoofed = to_device_edu("@mallory:elsewhere.example", "s1", {alice.user_id: {"*": {"n": 1}}})
    not_ours = to_device_edu(remote.user("r"), "s2", {"@x:elsewhere.example": {"*": {"n": 2}}})
    good = to_device_edu(remote.user("r"), "s3", {alice.user_id: {alice.device_id: {"n": 3}}})
    junk: list[Any] = [
        "not an edu",
        {"edu_type": ["list"], "content": {}},
        {"edu_type": "m.direct_to_device", "content": "text"},
        {"edu_type": "m.direct_to_device", "content": {"sender": remote.user("r")}},
        {"edu_type": "m.typing", "content": {"room_id": "!r:x", "user_id": "@u:x"}},
    ]
    # Every bad EDU is skipped on its own; the good one after them is still delivered.
    await send_edus(server, remote, [spoofed, not_ours, *junk, good])
    assert [m["content"] for m in await inbox(hs, alice)] == [{"n": 3}]


# --- m.device_list_update ----------------------------------------------------------------------
class StubRemoteKeys:
    """Stands in for hs.remote_keys in resyncs: answers user/devices from ``lists`` as they are
    when asked; the n-th call waits for ``gates[n]`` when there is one."""

    def __init__(self) -> None:
        self.lists: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.gates: list[asyncio.Event] = []

    async def user_devices(self, user_id: str, timeout_s: float) -> dict[str, Any]:
        answer = self.lists.get(user_id)
        call = len(self.calls)
        self.calls.append(user_id)
        if call < len(self.gates):
            await self.gates[call].wait()
        if answer is None:
            raise FederationUnreachable("no answer")
        return answer

    async def wait_for_calls(self, n: int) -> None:
        for _ in range(500):
            if len(self.calls) >= n:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{n} resyncs expected, {len(self.calls)} made")


def device_update(
    user_id: str, device_id: str, stream_id: int, prev_id: list[int], **extra: Any
) -> dict[str, Any]:
    content = {"user_id": user_id, "device_id": device_id, "stream_id": stream_id}
    return {"edu_type": "m.device_list_update", "content": {**content, "prev_id": prev_id, **extra}}


async def remote_in_alices_room(server: TestServer) -> tuple[TestUser, Remote, StubRemoteKeys]:
    hs = server.hs
    alice = await server.register("alice")
    remote = Remote()
    await remote.seed_key(hs)
    room_id = await create_public_room(server, alice)
    await remote.join(hs, room_id, "r")
    stub = StubRemoteKeys()
    hs.e2e_edus.remote_keys = stub  # type: ignore[assignment]
    return alice, remote, stub


async def changed_since(hs: Homeserver, position: int) -> set[str]:
    return await hs.store.device_lists.get_changed_users(
        position, await hs.store.device_lists.get_position()
    )


async def test_device_list_update_resyncs_then_applies_updates_in_order(
    server: TestServer,
) -> None:
    hs = server.hs
    alice, remote, stub = await remote_in_alices_room(server)
    user = remote.user("r")
    phone = device_keys(user, "RPHONE")
    stub.lists[user] = {
        "stream_id": 12,
        "devices": {"RPHONE": {"device_id": "RPHONE", "keys": phone}},
        "cross_signing": {"master": cross_signing_key(user, "master", "RMASTER")},
    }
    first = await sync(server, alice)
    start = await hs.store.device_lists.get_position()

    # Untracked: the update cannot be applied on its own; the whole list is fetched.
    await send_edus(server, remote, [device_update(user, "RPHONE", 10, [9], keys=phone)])
    assert await changed_since(hs, start) == {user}
    await hs.e2e_edus.wait_for_resyncs()
    assert stub.calls == [user]
    cached = await hs.store.remote_device_lists.get(user)
    assert cached is not None and (cached.stream_id, cached.stale) == (12, False)
    assert cached.devices == {"RPHONE": {"device_id": "RPHONE", "keys": phone}}
    master = (await hs.store.e2e_keys.get_cross_signing_keys([user]))[user]["master"]
    assert master["keys"] == {"ed25519:RMASTER": "RMASTER"}
    got = await sync(server, alice, since=first["next_batch"])
    assert user in got["device_lists"]["changed"]

    # Updates that follow what we hold are applied without asking the server.
    laptop = device_keys(user, "RLAPTOP")
    edus = [
        device_update(user, "RLAPTOP", 13, [12], keys=laptop, device_display_name="lap"),
        device_update(user, "RPHONE", 14, [13], deleted=True),
    ]
    position = await hs.store.device_lists.get_position()
    await send_edus(server, remote, edus)
    cached = await hs.store.remote_device_lists.get(user)
    assert cached is not None and (cached.stream_id, cached.stale) == (14, False)
    assert cached.devices == {
        "RLAPTOP": {"device_id": "RLAPTOP", "keys": laptop, "device_display_name": "lap"}
    }
    assert await hs.store.device_lists.get_position() == position + 2
    assert stub.calls == [user]

    # A resent update is already held: nothing recorded.
    await send_edus(server, remote, edus[:1])
    assert await hs.store.device_lists.get_position() == position + 2

    # A gap (prev_id 18 is not our 14): stale at once, then fetched again.
    stub.lists[user] = {"stream_id": 20, "devices": {}, "cross_signing": {}}
    stub.gates = [asyncio.Event(), asyncio.Event()]  # the first call is long done
    stub.gates[0].set()
    await send_edus(server, remote, [device_update(user, "RTAB", 20, [18])])
    stale = await hs.store.remote_device_lists.get(user)
    assert stale is not None and stale.stale
    stub.gates[1].set()
    await hs.e2e_edus.wait_for_resyncs()
    cached = await hs.store.remote_device_lists.get(user)
    assert cached is not None and (cached.stream_id, cached.stale, cached.devices) == (
        20,
        False,
        {},
    )
    assert stub.calls == [user, user]


async def test_update_during_a_resync_is_not_overwritten_by_it(server: TestServer) -> None:
    hs = server.hs
    _, remote, stub = await remote_in_alices_room(server)
    user = remote.user("r")
    stub.gates = [asyncio.Event(), asyncio.Event()]
    stub.lists[user] = {"stream_id": 5, "devices": {"A": {"device_id": "A"}}, "cross_signing": {}}
    await send_edus(server, remote, [device_update(user, "A", 5, [])])
    await stub.wait_for_calls(1)  # resync 1 asked; its answer (stream 5) is on its way
    # Another update meanwhile: the answer on its way predates it.
    await send_edus(server, remote, [device_update(user, "B", 6, [5])])
    stub.lists[user] = {
        "stream_id": 6,
        "devices": {"A": {"device_id": "A"}, "B": {"device_id": "B"}},
        "cross_signing": {},
    }
    stub.gates[0].set()
    await stub.wait_for_calls(2)  # the first answer was dropped, the list is asked again
    cached = await hs.store.remote_device_lists.get(user)
    assert cached is None or cached.stale  # never the older answer as if it were current
    stub.gates[1].set()
    await hs.e2e_edus.wait_for_resyncs()
    assert stub.calls == [user, user]
    cached = await hs.store.remote_device_lists.get(user)
    assert cached is not None and (cached.stream_id, cached.stale) == (6, False)
    assert set(cached.devices) == {"A", "B"}
    # The per-user bookkeeping lives only while a resync of that user runs: user IDs come
    # from peers, so nothing keyed by them may stay behind.
    assert hs.e2e_edus._update_counts == {}


async def test_device_list_updates_we_must_ignore(server: TestServer) -> None:
    hs = server.hs
    _, remote, stub = await remote_in_alices_room(server)
    start = await hs.store.device_lists.get_position()
    await send_edus(
        server,
        remote,
        [
            # nobody here shares a room with this user
            device_update(remote.user("lonely"), "D", 1, []),
            # another server's user
            device_update("@x:elsewhere.example", "D", 1, []),
            # malformed
            device_update(remote.user("r"), "D", "x", []),  # type: ignore[arg-type]
            device_update(remote.user("r"), "D", 1, "prev"),  # type: ignore[arg-type]
        ],
    )
    await hs.e2e_edus.wait_for_resyncs()
    assert await hs.store.device_lists.get_position() == start
    assert stub.calls == []
    assert await hs.store.remote_device_lists.get(remote.user("lonely")) is None


# --- m.signing_key_update ----------------------------------------------------------------------
async def test_signing_key_update_is_stored_and_recorded(server: TestServer) -> None:
    hs = server.hs
    _, remote, _ = await remote_in_alices_room(server)
    user = remote.user("r")
    start = await hs.store.device_lists.get_position()
    master = cross_signing_key(user, "master", "M1")
    self_signing = cross_signing_key(user, "self_signing", "S1")
    forged = cross_signing_key("@x:elsewhere.example", "master", "EVIL")
    update = {
        "edu_type": "m.signing_key_update",
        "content": {"user_id": user, "master_key": master, "self_signing_key": self_signing},
    }
    await send_edus(server, remote, [update])
    stored = (await hs.store.e2e_keys.get_cross_signing_keys([user]))[user]
    assert stored == {"master": master, "self_signing": self_signing}
    assert await changed_since(hs, start) == {user}
    position = await hs.store.device_lists.get_position()
    bad = [
        {"edu_type": "m.signing_key_update", "content": {"user_id": user, "master_key": forged}},
        {"edu_type": "m.signing_key_update", "content": {"user_id": "@x:elsewhere.example"}},
    ]
    await send_edus(server, remote, bad)
    assert (await hs.store.e2e_keys.get_cross_signing_keys([user]))[user]["master"] == master
    assert await hs.store.device_lists.get_position() == position


async def test_received_message_ids_are_pruned_after_a_day(server: TestServer) -> None:
    hs = server.hs
    remote = Remote()
    await remote.seed_key(hs)
    day = 24 * 3600 * 1000
    async with hs.store.db.transaction("test_old_ids") as txn:
        for message_id, ts in (("old", hs.clock() - 2 * day), ("recent", hs.clock())):
            await hs.store.device_inbox.record_received_message_txn(
                txn, remote.name, message_id, ts
            )
    await send_edus(server, remote, [])  # the first transaction prunes
    rows = await hs.store.db.fetchall("SELECT message_id FROM received_to_device_messages")
    assert [r[0] for r in rows] == ["recent"]
