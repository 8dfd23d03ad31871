"""``rc_invites`` (Synapse's per_room / per_user / per_issuer buckets) and ``rc_to_device``
(/sendToDevice requests per sending device): 429 M_LIMIT_EXCEEDED past the burst, on both
engines. createRoom's invites must fit the per-room burst: 400 "Cannot invite so many users at
once", as Synapse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig
from homeserver.config.ratelimiting import DEFAULT_INVITES, DEFAULT_TO_DEVICE, RateLimit
from tests.harness import TestServer as Server
from tests.harness import TestUser as User
from tests.harness import make_config
from tests.to_device.helpers import send_to_device

HIGH = {"per_second": 1000, "burst_count": 1000}
TIGHT = {"per_second": 0.0001, "burst_count": 2}


def _config(tmp_path: Path, **overrides: Any) -> HomeserverConfig:
    invites = {"per_room": HIGH, "per_user": HIGH, "per_issuer": HIGH, **overrides}
    return make_config(
        tmp_path,
        rc_room_creation=HIGH,
        rc_invites=invites,
        rc_to_device=TIGHT,
        rc_exempt_users=["@bridge:test.example"],
    )


async def _room(server: Server, user: User, **body: Any) -> str:
    status, answer = await server.call("POST", "/createRoom", user, json=body)
    assert status == 200, answer
    return str(answer["room_id"])


async def _invite(server: Server, user: User, room_id: str, target: str) -> tuple[int, Any]:
    return await server.call("POST", f"/rooms/{room_id}/invite", user, json={"user_id": target})


@pytest.fixture
def hs_config(tmp_path: Path, request: pytest.FixtureRequest) -> HomeserverConfig:
    return _config(tmp_path, **getattr(request, "param", {}))


@pytest.mark.parametrize("hs_config", [{"per_issuer": TIGHT}], indirect=True)
async def test_per_issuer(server: Server) -> None:
    alice = await server.register("alice")
    rooms = [await _room(server, alice) for _ in range(3)]
    results = [await _invite(server, alice, r, f"@u{i}:test.example") for i, r in enumerate(rooms)]
    assert [s for s, _ in results] == [200, 200, 429]
    assert results[2][1]["errcode"] == "M_LIMIT_EXCEEDED" and results[2][1]["retry_after_ms"] > 0
    carol = await server.register("carol")
    assert (await _invite(server, carol, await _room(server, carol), "@u9:test.example"))[0] == 200


@pytest.mark.parametrize("hs_config", [{"per_room": TIGHT}], indirect=True)
async def test_per_room(server: Server) -> None:
    alice = await server.register("alice")
    room, other = await _room(server, alice), await _room(server, alice)
    statuses = [(await _invite(server, alice, room, f"@u{i}:test.example"))[0] for i in range(3)]
    assert statuses == [200, 200, 429]
    assert (await _invite(server, alice, other, "@u9:test.example"))[0] == 200


@pytest.mark.parametrize("hs_config", [{"per_user": TIGHT}], indirect=True)
async def test_per_invitee(server: Server) -> None:
    alice = await server.register("alice")
    rooms = [await _room(server, alice) for _ in range(3)]
    statuses = [(await _invite(server, alice, r, "@bob:test.example"))[0] for r in rooms]
    assert statuses == [200, 200, 429]
    # A refused invite charged no other bucket, and changed nothing.
    assert (await _invite(server, alice, rooms[2], "@carol:test.example"))[0] == 200
    member = await server.hs.store.state.get_current_state_event(
        rooms[2], "m.room.member", "@bob:test.example"
    )
    assert member is None


@pytest.mark.parametrize("hs_config", [{"per_room": TIGHT}], indirect=True)
async def test_create_room_invites_must_fit_the_room_bucket(server: Server) -> None:
    alice = await server.register("alice")
    two = ["@u1:test.example", "@u2:test.example"]
    await _room(server, alice, invite=two)
    await _room(server, alice, invite=two)  # createRoom checks, it does not charge
    status, body = await server.call(
        "POST", "/createRoom", alice, json={"invite": [*two, "@u3:test.example"]}
    )
    assert (status, body) == (
        400,
        {"errcode": "M_UNKNOWN", "error": "Cannot invite so many users at once"},
    )
    assert await server.hs.store.db.fetchval("SELECT COUNT(*) FROM rooms") == 2


@pytest.mark.parametrize("hs_config", [{"per_issuer": TIGHT}], indirect=True)
async def test_exempt_users_are_not_limited(server: Server) -> None:
    bridge = await server.register("bridge")
    rooms = [await _room(server, bridge) for _ in range(3)]
    for index, room in enumerate(rooms):
        assert (await _invite(server, bridge, room, f"@u{index}:test.example"))[0] == 200


async def test_send_to_device_per_sending_device(server: Server) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    messages = {bob.user_id: {bob.device_id: {"n": 1}}}
    await send_to_device(server, alice, messages)
    await send_to_device(server, alice, messages)
    refused = await send_to_device(server, alice, messages, expect=429)
    assert refused["errcode"] == "M_LIMIT_EXCEEDED" and refused["retry_after_ms"] > 0
    other_device = await server.login_device(alice, "PHONE")
    await send_to_device(server, other_device, messages)
    bridge = await server.register("bridge")
    for _ in range(3):
        await send_to_device(server, bridge, messages)


def test_defaults_are_synapses(tmp_path: Path) -> None:
    limits = make_config(tmp_path).ratelimiting
    assert limits.rc_invites == DEFAULT_INVITES
    assert DEFAULT_INVITES.per_room == RateLimit(0.3, 10)
    assert DEFAULT_INVITES.per_user == RateLimit(0.003, 5)
    assert DEFAULT_INVITES.per_issuer == RateLimit(0.3, 10)
    assert limits.rc_to_device == DEFAULT_TO_DEVICE == RateLimit(20, 100)
    parsed = make_config(tmp_path, rc_invites={"per_user": {"burst_count": 7}}).ratelimiting
    assert parsed.rc_invites.per_user == RateLimit(0.003, 7)
    with pytest.raises(Exception, match=r"rc_invites\.per_room\.burst_count"):
        make_config(tmp_path, rc_invites={"per_room": {"burst_count": 0}})
