"""Presence on both engines: PUT and GET /presence/{userId}/status (only yourself; only users who
share a joined room), m.presence in /sync for room mates and as the filter allows,
set_presence, Synapse's timeouts, presence disabled (rc_presence: tests/hardening)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from homeserver.app import Homeserver
from homeserver.config import HomeserverConfig
from homeserver.ephemeral.presence import (
    IDLE_TIMER_MS,
    LAST_ACTIVE_GRANULARITY_MS,
    MAX_STATUS_MSG_LENGTH,
    SYNC_ONLINE_TIMEOUT_MS,
    PresenceService,
)
from tests.builders import join, make_room
from tests.harness import FIXED_NOW_MS, TestServer, make_config
from tests.sync.helpers import sync


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    # rc_presence (Synapse's 0.1/s, burst 1) is tested in tests/hardening.
    return make_config(tmp_path, rc_presence={"per_second": 1000, "burst_count": 1000})


def presence_of(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["sender"]: e["content"] for e in body["presence"]["events"]}


async def test_presence_set_read_and_synced_to_room_mates(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")  # shares no room
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, bob.user_id)
    first = await sync(server, bob, set_presence="offline")
    assert presence_of(first) == {}  # nobody online yet, bob's sync does not count

    path = f"/presence/{alice.user_id}/status"
    status, _ = await server.call(
        "PUT", path, alice, json={"presence": "online", "status_msg": "hi"}
    )
    assert status == 200
    for reader in (alice, bob):
        status, body = await server.call("GET", path, reader)
        assert status == 200
        assert body["presence"] == "online" and body["status_msg"] == "hi"
        assert body["currently_active"] is True and isinstance(body["last_active_ago"], int)
    status, body = await server.call("GET", path, carol)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # Only yourself.
    status, body = await server.call("PUT", path, bob, json={"presence": "offline"})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")

    got = await sync(server, bob, since=first["next_batch"], set_presence="offline")
    assert presence_of(got)[alice.user_id]["status_msg"] == "hi"
    assert presence_of(got)[alice.user_id]["user_id"] == alice.user_id
    assert alice.user_id not in presence_of(await sync(server, carol))

    # A change reaches bob; a filter without m.presence leaves it out.
    await server.call("PUT", path, alice, json={"presence": "unavailable"})
    none = json.dumps({"presence": {"not_types": ["m.presence"]}})
    filtered = await sync(server, bob, since=got["next_batch"], filter=none, set_presence="offline")
    assert presence_of(filtered) == {}
    later = await sync(server, bob, since=got["next_batch"], set_presence="offline")
    assert presence_of(later)[alice.user_id] == {
        "user_id": alice.user_id,
        "presence": "unavailable",
        "last_active_ago": presence_of(later)[alice.user_id]["last_active_ago"],
    }  # no status_msg (cleared by a PUT without it) and no currently_active
    quiet = await sync(server, bob, since=later["next_batch"], set_presence="offline")
    assert presence_of(quiet) == {}

    # Bob's own sync makes him online (the default set_presence), as unavailable if asked.
    own = await sync(server, bob, since=quiet["next_batch"])
    assert presence_of(own)[bob.user_id]["presence"] == "online"


async def test_presence_bodies_refused(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    path = f"/presence/{alice.user_id}/status"
    for bad in (
        {},
        {"presence": "busy"},
        {"presence": 1},
        {"presence": "online", "status_msg": 5},
        {"presence": "online", "status_msg": None},
        {"presence": "online", "extra": 1},
        {"presence": "online", "status_msg": "x" * (MAX_STATUS_MSG_LENGTH + 1)},
    ):
        status, body = await server.call("PUT", path, alice, json=bad)
        assert status == 400 and body["errcode"] in ("M_BAD_JSON", "M_TOO_LARGE"), bad
    assert await hs.store.presence.get(alice.user_id) is None
    status, body = await server.call("GET", "/presence/not-a-user/status", alice)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


class _Clock:
    def __init__(self) -> None:
        self.now = FIXED_NOW_MS

    def __call__(self) -> int:
        return self.now


async def test_presence_timeouts(hs: Homeserver):
    clock = _Clock()
    service = PresenceService(hs.store, hs.notifier, clock, hs.server_name)
    alice, bob = "@alice:test.example", "@bob:test.example"
    await service.set_presence(alice, alice, {"presence": "online"})
    async with service.syncing(bob, "online"):
        clock.now += SYNC_ONLINE_TIMEOUT_MS + 1
        assert await service.handle_timeouts() == 1
        # alice does not sync: offline; bob syncs: online.
        assert (await hs.store.presence.get(alice)).state == "offline"  # type: ignore[union-attr]
        assert (await hs.store.presence.get(bob)).currently_active  # type: ignore[union-attr]
        # Inactive for more than a minute: still online, not currently active.
        clock.now += LAST_ACTIVE_GRANULARITY_MS
        assert await service.handle_timeouts() == 1
        bob_state = await hs.store.presence.get(bob)
        assert bob_state is not None and (bob_state.state, bob_state.currently_active) == (
            "online",
            False,
        )
        clock.now += IDLE_TIMER_MS
        assert await service.handle_timeouts() == 1
        assert (await hs.store.presence.get(bob)).state == "unavailable"  # type: ignore[union-attr]
    clock.now += SYNC_ONLINE_TIMEOUT_MS + 1
    assert await service.handle_timeouts() == 1
    assert (await hs.store.presence.get(bob)).state == "offline"  # type: ignore[union-attr]
    clock.now += SYNC_ONLINE_TIMEOUT_MS
    assert await service.handle_timeouts() == 0
    assert service._last_sync == {}  # bounded: nobody syncs any more


async def test_presence_disabled(hs: Homeserver):
    service = PresenceService(hs.store, hs.notifier, hs.clock, hs.server_name, enabled=False)
    alice = "@alice:test.example"
    await service.set_presence(alice, alice, {"presence": "online"})
    async with service.syncing(alice, "online"):
        pass
    assert await service.get_presence(alice, "@stranger:test.example") == {"presence": "offline"}
    assert await hs.store.presence.get(alice) is None
    assert await service.on_edu("remote.example", {"push": []}) == ["presence is disabled"]
