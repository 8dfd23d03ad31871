"""Who may read the room directory: clients need a token unless
``allow_public_rooms_without_auth``; other servers are refused (403) unless
``allow_public_rooms_over_federation`` (both false by default, as in Synapse)."""

from __future__ import annotations

from pathlib import Path

import pytest
from signedjson.key import generate_signing_key

from homeserver.app import Homeserver, create_app
from homeserver.config import HomeserverConfig
from homeserver.storage import Store
from tests.builders import create_public_room
from tests.federation.received_helpers import Remote, signed_request
from tests.harness import TestServer as Server
from tests.harness import TickingClock, make_config

FED = "/_matrix/federation/v1/publicRooms"
HIGH = {"per_second": 1000, "burst_count": 1000}


async def _server(tmp_path: Path, store: Store, aiohttp_client: object, **flags: bool) -> Server:
    config: HomeserverConfig = make_config(tmp_path, rc_room_creation=HIGH, **flags)
    hs = Homeserver(config, generate_signing_key("a_test"), store, clock=TickingClock())
    return Server(hs, await aiohttp_client(create_app(hs)))  # type: ignore[operator]


async def test_defaults_refuse_anonymous_and_federation(
    tmp_path: Path, store: Store, aiohttp_client: object
) -> None:
    server = await _server(tmp_path, store, aiohttp_client)
    alice = await server.register("alice")
    await create_public_room(server, alice, visibility="public")
    for method in ("GET", "POST"):
        status, body = await server.call(method, "/publicRooms", json={})
        assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN"), method
        status, body = await server.call(method, "/publicRooms", alice, json={})
        assert status == 200 and len(body["chunk"]) == 1, method
    remote = Remote()
    await remote.seed_key(server.hs)
    status, body = await signed_request(server, remote, "GET", FED)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await signed_request(server, remote, "POST", FED, {"limit": 5})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await server.call("GET", FED)
    assert status == 401  # unsigned: refused before the flag is even looked at


async def test_flags_open_the_directory(
    tmp_path: Path, store: Store, aiohttp_client: object
) -> None:
    server = await _server(
        tmp_path,
        store,
        aiohttp_client,
        allow_public_rooms_without_auth=True,
        allow_public_rooms_over_federation=True,
    )
    alice = await server.register("alice")
    room_id = await create_public_room(server, alice, visibility="public", name="Lobby")
    await create_public_room(server, alice, visibility="public", name="Other")
    await create_public_room(server, alice, visibility="private")
    status, body = await server.call("GET", "/publicRooms")
    assert status == 200 and len(body["chunk"]) == 2
    status, body = await server.call("GET", "/publicRooms", headers={"Authorization": "Bearer x"})
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")  # a bad token is still bad
    remote = Remote()
    await remote.seed_key(server.hs)
    status, body = await signed_request(server, remote, "GET", FED)
    assert status == 200 and {r["room_id"] for r in body["chunk"]} >= {room_id}
    assert len(body["chunk"]) == 2
    status, body = await signed_request(server, remote, "GET", FED + "?limit=1")
    assert status == 200 and len(body["chunk"]) == 1 and body["next_batch"]
    status, body = await signed_request(
        server, remote, "POST", FED, {"filter": {"generic_search_term": "lobby"}}
    )
    assert status == 200 and [r["room_id"] for r in body["chunk"]] == [room_id]
    status, body = await signed_request(server, remote, "POST", FED, {"limit": "x"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await signed_request(server, remote, "GET", FED + "?limit=x")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


@pytest.mark.parametrize(
    "key", ["allow_public_rooms_without_auth", "allow_public_rooms_over_federation"]
)
def test_flags_must_be_booleans(tmp_path: Path, key: str) -> None:
    assert getattr(make_config(tmp_path).rooms, key) is False
    with pytest.raises(Exception, match=key):
        make_config(tmp_path, **{key: "yes"})
