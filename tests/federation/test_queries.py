"""Federation queries served (query/directory, query/profile; the end-to-end key endpoints are
tested in test_e2e_serving.py) and used by the client API (GET /directory/room/{remote alias},
GET /profile/{remote user}); both engines."""

from __future__ import annotations

from pathlib import Path

from homeserver.storage import Store
from tests.builders import create_public_room
from tests.federation.cs_client import q
from tests.federation.h4_helpers import second_store, two_servers
from tests.federation.received_helpers import Remote, signed_request
from tests.harness import TestServer

__all__ = ["second_store"]
V1 = "/_matrix/federation/v1"


async def test_query_directory(server: TestServer) -> None:
    hs = server.hs
    alice = await server.register("alice")
    room_id = await create_public_room(server, alice, room_alias_name="lobby")
    remote = Remote()
    await remote.seed_key(hs)
    path = f"{V1}/query/directory?room_alias={q('#lobby:test.example')}"
    status, body = await signed_request(server, remote, "GET", path)
    assert (status, body) == (200, {"room_id": room_id, "servers": ["test.example"]})
    for alias in ("#nothing:test.example", "#lobby:elsewhere.example"):
        path = f"{V1}/query/directory?room_alias={q(alias)}"
        status, body = await signed_request(server, remote, "GET", path)
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND"), alias
    status, body = await signed_request(server, remote, "GET", f"{V1}/query/directory")
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    status, _ = await server.call("GET", f"{V1}/query/directory?room_alias=%23lobby%3Atest.example")
    assert status == 401  # unsigned


async def test_query_profile(server: TestServer) -> None:
    hs = server.hs
    alice = await server.register("alice")
    await hs.store.profiles.set_field(alice.user_id, "displayname", "Alice")
    remote = Remote()
    await remote.seed_key(hs)
    base = f"{V1}/query/profile?user_id={q(alice.user_id)}"
    status, body = await signed_request(server, remote, "GET", base)
    assert (status, body) == (200, {"displayname": "Alice"})
    status, body = await signed_request(server, remote, "GET", base + "&field=displayname")
    assert (status, body) == (200, {"displayname": "Alice"})
    status, body = await signed_request(server, remote, "GET", base + "&field=avatar_url")
    assert (status, body) == (200, {"avatar_url": None})
    status, body = await signed_request(server, remote, "GET", base + "&field=m.nope")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    path = f"{V1}/query/profile?user_id={q('@ghost:test.example')}"
    status, body = await signed_request(server, remote, "GET", path)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    path = f"{V1}/query/profile?user_id={q('@x:elsewhere.example')}"
    status, body = await signed_request(server, remote, "GET", path)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await signed_request(server, remote, "GET", f"{V1}/query/profile")
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    status, body = await signed_request(server, remote, "GET", f"{V1}/query/whatever")
    assert (status, body["errcode"]) == (404, "M_UNRECOGNIZED")


async def test_client_asks_remote_alias_and_profile(
    tmp_path: Path, store: Store, second_store: Store
) -> None:
    async with two_servers(tmp_path, store, second_store) as (a, b):
        alice = await a.user("alice")
        bob = await b.user("bob")
        await alice.ok("PUT", f"/profile/{q(alice.user_id)}/displayname", {"displayname": "Al"})
        room_id = await alice.create_room(preset="public_chat", room_alias_name="hall")
        body = await bob.ok("GET", f"/directory/room/{q('#hall:' + a.name)}")
        assert body["room_id"] == room_id and a.name in body["servers"]
        status, body = await bob.call("GET", f"/directory/room/{q('#gone:' + a.name)}")
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
        assert await bob.ok("GET", f"/profile/{q(alice.user_id)}") == {"displayname": "Al"}
        status, body = await bob.call("GET", f"/profile/{q('@ghost:' + a.name)}")
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
