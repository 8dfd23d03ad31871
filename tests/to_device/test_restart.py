"""To-device delivery exactly once across a restart: the inbox and the acknowledgement live in
the database, so a new server process over the same database answers a lost sync again and
forgets a message once it was acknowledged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from signedjson.key import generate_signing_key

from homeserver.app import Homeserver, create_app
from homeserver.storage import Store
from tests.conftest import OpenTestDatabase
from tests.harness import TestServer, TickingClock, make_config
from tests.sync.helpers import sync
from tests.to_device.helpers import send_to_device, to_device_events


async def _start(
    open_test_database: OpenTestDatabase, aiohttp_client: Any, tmp_path: Path
) -> TestServer:
    db = await open_test_database()
    hs = Homeserver(
        make_config(tmp_path), generate_signing_key("a_test"), Store(db), clock=TickingClock()
    )
    return TestServer(hs, await aiohttp_client(create_app(hs)))


async def _stop(server: TestServer) -> None:
    await server.client.close()
    await server.hs.store.db.close()


async def test_exactly_once_across_restarts(
    open_test_database: OpenTestDatabase, aiohttp_client: Any, tmp_path: Path
):
    server = await _start(open_test_database, aiohttp_client, tmp_path)
    alice = await server.register("alice")
    bob = await server.register("bob")
    first = await sync(server, bob)
    await send_to_device(server, alice, {bob.user_id: {bob.device_id: {"n": 1}}}, txn_id="t1")
    delivered = await sync(server, bob, since=first["next_batch"])
    assert [e["content"] for e in to_device_events(delivered)] == [{"n": 1}]
    await _stop(server)

    # Restarted before the client acknowledged: the retried sync gets the message again, and a
    # retried send (same transaction ID) still delivers nothing new.
    server = await _start(open_test_database, aiohttp_client, tmp_path)
    await send_to_device(server, alice, {bob.user_id: {bob.device_id: {"n": 1}}}, txn_id="t1")
    retried = await sync(server, bob, since=first["next_batch"])
    assert [e["content"] for e in to_device_events(retried)] == [{"n": 1}]
    acknowledged = await sync(server, bob, since=retried["next_batch"])
    assert to_device_events(acknowledged) == []
    await _stop(server)

    # Acknowledged before this restart: never again, whatever token the client comes with.
    server = await _start(open_test_database, aiohttp_client, tmp_path)
    assert to_device_events(await sync(server, bob)) == []
    assert to_device_events(await sync(server, bob, since=acknowledged["next_batch"])) == []
    inbox = await server.hs.store.device_inbox.get_messages(
        bob.user_id, bob.device_id, 0, 2**62, 10
    )
    assert inbox == []
