"""``/_homeserver/admin/v1`` lifecycle and stuck-upgrade endpoints, on both engines: who may
call them, a room's lifecycle after creation and after an upgrade (both rooms), rooms left
``upgrading``, and failed upgrades kept in the database (so a restarted server still lists
them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from signedjson.key import generate_signing_key

from homeserver.app import Homeserver
from homeserver.config import HomeserverConfig
from homeserver.storage import Store
from tests.builders import create_room, generous_config
from tests.harness import TestServer, TestUser, TickingClock
from tests.rooms.upgrade.helpers import join, upgrade

ADMIN = "/_homeserver/admin/v1"


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


def lifecycle_path(room_id: str) -> str:
    return f"{ADMIN}/rooms/{quote(room_id, safe='')}/lifecycle"


async def _get(server: TestServer, path: str, user: TestUser, **params: str) -> Any:
    status, body = await server.call("GET", path, user, params=params or None)
    assert status == 200, body
    return body


async def _lock(hs: Homeserver, room_id: str, holder: str, expires_in_ms: int) -> int:
    """Leave ``room_id`` ``upgrading`` as a crashed upgrader would; the lock's start time."""
    now = hs.clock()
    assert await hs.store.rooms.transition(
        room_id,
        "active",
        "upgrading",
        actor="requester",
        reason=f"upgrade to room version 11 requested by {holder}",
        ts=now,
        upgrade_lock_holder=holder,
        upgrade_lock_expires_ts=now + expires_in_ms,
    )
    return now


async def test_only_server_admins(server: TestServer) -> None:
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="public_chat")
    for path in (
        lifecycle_path(room),
        f"{ADMIN}/rooms/{quote(room, safe='')}/upgrade_plan?new_version=11",
        f"{ADMIN}/upgrades/stuck",
    ):
        status, body = await server.call("GET", path)
        assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN"), path
        status, body = await server.call("GET", path, alice)
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), path
        status, body = await server.call(
            "GET", path, headers={"Authorization": "Bearer not-a-token"}
        )
        assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN"), path


async def test_lifecycle_after_create(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="private_chat", room_version="10")
    created = await server.hs.store.rooms.get_room(room)
    assert created is not None
    body = await _get(server, lifecycle_path(room), admin)
    assert body == {
        "room_id": room,
        "status": "active",
        "room_version": "10",
        "creator": alice.user_id,
        "created_ts": created.created_ts,
        "predecessor": None,
        "successor": None,
        "transitions": [
            {
                "from": None,
                "to": "active",
                "actor": alice.user_id,
                "reason": "created",
                "ts": created.created_ts,
            }
        ],
    }


@pytest.mark.parametrize("target", ["11", "12"])
async def test_lifecycle_after_upgrade_shows_both_rooms(server: TestServer, target: str) -> None:
    hs = server.hs
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    old = await create_room(server, alice, preset="public_chat", room_version="10")
    status, answer = await upgrade(server, alice, old, target)
    assert status == 200, answer
    new = answer["replacement_room"]
    record = await hs.store.upgrades.get_upgrade(old)
    assert record is not None

    old_body = await _get(server, lifecycle_path(old), admin)
    assert old_body["status"] == "tombstoned"
    assert old_body["predecessor"] is None
    assert old_body["successor"] == {
        "room_id": new,
        "version": target,
        "upgrader": alice.user_id,
        "upgraded_at": record.ts,
    }
    steps = [(t["from"], t["to"], t["actor"]) for t in old_body["transitions"]]
    assert steps == [
        (None, "active", alice.user_id),
        ("active", "upgrading", "requester"),
        ("upgrading", "tombstoned", "system"),
    ]
    assert alice.user_id in old_body["transitions"][1]["reason"]
    assert new in old_body["transitions"][2]["reason"]
    assert all(isinstance(t["ts"], int) for t in old_body["transitions"])
    assert "upgrade_lock" not in old_body

    new_body = await _get(server, lifecycle_path(new), admin)
    tombstone_id = await hs.store.state.get_current_state_event_id(old, "m.room.tombstone", "")
    # v12 create events cannot name the tombstone (it names the room their hash makes).
    expected_event_id = tombstone_id if target == "11" else None
    assert new_body["predecessor"] == {"room_id": old, "event_id": expected_event_id}
    assert (new_body["status"], new_body["room_version"], new_body["successor"]) == (
        "active",
        target,
        None,
    )
    assert [t["to"] for t in new_body["transitions"]] == ["active"]


async def test_a_tombstone_sent_by_a_client_shows_its_successor(server: TestServer) -> None:
    """No upgrade record: the successor comes from the room row and the tombstoning transition."""
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    old = await create_room(server, alice, preset="public_chat", room_version="10")
    new = await create_room(server, alice, preset="public_chat", room_version="11")
    status, body = await server.call(
        "PUT",
        f"/rooms/{old}/state/m.room.tombstone",
        alice,
        json={"body": "moved", "replacement_room": new},
    )
    assert status == 200, body
    answer = await _get(server, lifecycle_path(old), admin)
    assert answer["status"] == "tombstoned"
    assert answer["successor"] == {
        "room_id": new,
        "version": "11",
        "upgraded_at": answer["transitions"][-1]["ts"],
    }
    assert answer["transitions"][-1]["to"] == "tombstoned"


async def test_lifecycle_of_unknown_or_invalid_room(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    status, body = await server.call("GET", lifecycle_path("!nope:test.example"), admin)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await server.call("GET", lifecycle_path("not-a-room"), admin)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


async def test_stuck_lists_rooms_left_upgrading(server: TestServer) -> None:
    hs = server.hs
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    live = await create_room(server, alice, preset="public_chat", room_version="10")
    stale = await create_room(server, alice, preset="public_chat", room_version="9")
    await create_room(server, alice, preset="public_chat")  # active: not listed
    assert await _get(server, f"{ADMIN}/upgrades/stuck", admin) == {
        "stuck": [],
        "failed": [],
        "total_failed": 0,
    }
    live_since = await _lock(hs, live, alice.user_id, 3_600_000)
    stale_since = await _lock(hs, stale, alice.user_id, -1)

    body = await _get(server, f"{ADMIN}/upgrades/stuck", admin)
    stuck = {entry["room_id"]: entry for entry in body["stuck"]}
    assert set(stuck) == {live, stale}
    entry = stuck[live]
    assert entry["lock_holder"] == alice.user_id
    assert entry["lock_expires_ts"] == live_since + 3_600_000
    assert entry["lock_expired"] is False
    assert entry["upgrading_since_ts"] == live_since
    assert entry["upgrading_for_ms"] > 0
    assert entry["room_version"] == "10"
    assert entry["reason"] == f"upgrade to room version 11 requested by {alice.user_id}"
    assert stuck[stale]["lock_expired"] is True
    assert stuck[stale]["upgrading_since_ts"] == stale_since

    # the lifecycle shows the lock too
    lifecycle = await _get(server, lifecycle_path(live), admin)
    assert lifecycle["status"] == "upgrading"
    assert lifecycle["upgrade_lock"] == {
        "holder": alice.user_id,
        "expires_ts": live_since + 3_600_000,
    }

    # the next upgrade request recovers the expired lease and goes on: no longer stuck
    status, answer = await upgrade(server, alice, stale, "11")
    assert status == 200, answer
    body = await _get(server, f"{ADMIN}/upgrades/stuck", admin)
    assert [entry["room_id"] for entry in body["stuck"]] == [live]


async def test_failed_upgrades_are_kept_and_survive_a_restart(
    server: TestServer, hs_config: HomeserverConfig, store: Store
) -> None:
    hs = server.hs
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="public_chat", room_version="10")

    async def explode(room_id: str) -> None:
        raise RuntimeError("disk on fire")

    hs.room_upgrades.before_commit = explode
    status, answer = await upgrade(server, alice, room, "11")
    assert (status, answer["errcode"]) == (500, "M_UNKNOWN")
    # a refusal of the client's request is not a failure of the server: not kept
    status, answer = await upgrade(server, alice, room, "999")
    assert (status, answer["errcode"]) == (400, "M_UNSUPPORTED_ROOM_VERSION")
    bob = await server.register("bob")
    await join(server, room, bob)
    status, answer = await upgrade(server, bob, room, "11")
    assert (status, answer["errcode"]) == (403, "M_FORBIDDEN")

    body = await _get(server, f"{ADMIN}/upgrades/stuck", admin)
    assert body["stuck"] == []  # the failed upgrade released its lock
    assert body["total_failed"] == 1
    (failed,) = body["failed"]
    assert (failed["room_id"], failed["reason"]) == (room, "internal")
    assert isinstance(failed["ts"], int)

    # another process over the same database (a restart) lists it too
    restarted = Homeserver(hs_config, generate_signing_key("a_test"), store, clock=TickingClock())
    again = await restarted.admin_lifecycle.stuck_upgrades(10)
    assert again["failed"] == body["failed"]


async def test_failures_are_listed_newest_first_and_limited(server: TestServer) -> None:
    hs = server.hs
    admin = await server.register("root", admin=True)
    for n in range(3):
        await hs.store.upgrade_audit.record_failure(f"!r{n}:test.example", "internal", 1000 + n)
    body = await _get(server, f"{ADMIN}/upgrades/stuck", admin, limit="2")
    assert [f["room_id"] for f in body["failed"]] == ["!r2:test.example", "!r1:test.example"]
    assert body["total_failed"] == 3
    for bad in ("1001", "-1", "x", "1.5", "٣"):
        status, answer = await server.call(
            "GET", f"{ADMIN}/upgrades/stuck", admin, params={"limit": bad}
        )
        assert (status, answer["errcode"]) == (400, "M_INVALID_PARAM"), bad


async def test_failures_beyond_the_retention_are_forgotten(server: TestServer) -> None:
    audit = server.hs.store.upgrade_audit
    audit.keep_failures = 3
    for n in range(5):
        await audit.record_failure(f"!r{n}:test.example", "retries_exhausted", n)
    kept = await audit.get_recent_failures(10)
    assert [f.room_id for f in kept] == [f"!r{n}:test.example" for n in (4, 3, 2)]
    assert await audit.count_failures() == 3


async def test_a_failing_recorder_never_fails_the_upgrade(server: TestServer) -> None:
    hs = server.hs
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="public_chat", room_version="10")

    async def broken(*_args: Any) -> None:
        raise OSError("database gone")

    hs.store.upgrade_audit.record_failure = broken  # type: ignore[method-assign]

    async def explode(room_id: str) -> None:
        raise RuntimeError("boom")

    hs.room_upgrades.before_commit = explode
    status, answer = await upgrade(server, alice, room, "11")
    assert (status, answer["errcode"]) == (500, "M_UNKNOWN")
    hs.room_upgrades.before_commit = None
    status, answer = await upgrade(server, alice, room, "11")
    assert status == 200, answer
