"""The upgrade lock, idempotency, lease expiry, start-up recovery, state conflicts and
in-process races, on both engines (plus two Homeservers over two pools on one database)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from signedjson.key import generate_signing_key

from homeserver.app import Homeserver
from homeserver.config import HomeserverConfig
from homeserver.events.draft import EventDraft
from homeserver.rooms import upgrade as upgrade_module
from homeserver.storage import Store
from tests.builders import create_room, generous_config
from tests.conftest import OpenTestDatabase
from tests.harness import TestServer, TestUser, TickingClock
from tests.rooms.upgrade.helpers import join, record_domain_events, state_of, table_counts, upgrade


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def _lock_for(hs: Homeserver, room_id: str, user_id: str, expires_in_ms: int) -> None:
    now = hs.clock()
    assert await hs.store.rooms.transition(
        room_id,
        "active",
        "upgrading",
        actor="requester",
        reason="test",
        ts=now,
        upgrade_lock_holder=user_id,
        upgrade_lock_expires_ts=now + expires_in_ms,
    )


async def _status(hs: Homeserver, room_id: str) -> str:
    room = await hs.store.rooms.get_room(room_id)
    assert room is not None
    return room.status


async def _admins_room(server: TestServer, count: int) -> tuple[str, list[TestUser]]:
    users = [await server.register(f"admin{i}") for i in range(count)]
    room = await create_room(
        server,
        users[0],
        preset="public_chat",
        room_version="10",
        power_level_content_override={"users": {u.user_id: 100 for u in users}},
    )
    await join(server, room, *users[1:])
    return room, users


@pytest.mark.parametrize("requester", [0, 1], ids=["same_user", "other_admin"])
async def test_a_request_waits_for_the_upgrade_running_elsewhere(
    server: TestServer, monkeypatch: pytest.MonkeyPatch, requester: int
) -> None:
    """The room is locked by another process's upgrade (alice's): any admin's request waits
    for its outcome (no 400 "in progress")."""
    hs = server.hs
    room, admins = await _admins_room(server, 2)
    alice = admins[0]
    await _lock_for(hs, room, alice.user_id, 60_000)
    locks = hs.room_upgrades.locks
    parked = asyncio.Event()
    wait_for_outcome = locks.wait_for_outcome

    async def watched(seen: Any) -> Any:
        parked.set()  # the request found the lock held and waits on it
        return await wait_for_outcome(seen)

    monkeypatch.setattr(locks, "wait_for_outcome", watched)
    waiting = asyncio.create_task(upgrade(server, admins[requester], room, "11"))
    await asyncio.wait_for(parked.wait(), 10)
    assert not waiting.done()
    # the running upgrade gives up (its lock released): the waiting request does it itself
    assert await hs.store.rooms.transition(
        room, "upgrading", "active", actor="system", reason="test", ts=hs.clock()
    )
    status, body = await asyncio.wait_for(waiting, 10)
    assert status == 200, body
    assert await _status(hs, room) == "tombstoned"


async def test_expired_lease_is_recovered_by_the_next_request(server: TestServer) -> None:
    hs = server.hs
    room, (alice, bob) = await _admins_room(server, 2)
    await _lock_for(hs, room, bob.user_id, -1_000)  # bob's upgrader died long ago
    status, body = await upgrade(server, alice, room, "11")
    assert status == 200, body
    history = [
        (t.from_status, t.to_status, t.actor, t.reason)
        for t in await hs.store.rooms.get_transitions(room)
    ]
    assert ("upgrading", "active", "system", "lease expired") in history
    assert history[-1][:2] == ("upgrading", "tombstoned")


async def test_start_up_recovery(server: TestServer) -> None:
    hs = server.hs
    room, (alice, _bob) = await _admins_room(server, 2)
    other = await create_room(server, alice, preset="public_chat", room_version="10")
    await _lock_for(hs, room, alice.user_id, 60_000)
    assert await hs.room_upgrades.recover_stranded_upgrades() == [room]
    assert await _status(hs, room) == "active"
    assert await _status(hs, other) == "active"
    last = (await hs.store.rooms.get_transitions(room))[-1]
    assert (last.from_status, last.to_status, last.actor, last.reason) == (
        "upgrading",
        "active",
        "system",
        "recovered at start-up",
    )
    assert await hs.room_upgrades.recover_stranded_upgrades() == []


async def test_state_conflicts_are_retried(server: TestServer) -> None:
    hs = server.hs
    room, (alice, _bob) = await _admins_room(server, 2)
    conflicts = 2

    async def change_state(room_id: str) -> None:
        nonlocal conflicts
        if conflicts:
            conflicts -= 1
            await hs.sender.send(
                room_id, EventDraft("m.room.topic", alice.user_id, {"topic": f"t{conflicts}"}, "")
            )

    hs.room_upgrades.before_commit = change_state
    status, body = await upgrade(server, alice, room, "11")
    assert status == 200, body
    # the plan that committed saw the last change
    state = await state_of(hs, body["replacement_room"])
    assert state[("m.room.topic", "")] == {"topic": "t0"}


async def test_too_many_conflicts_fail_cleanly(server: TestServer) -> None:
    hs = server.hs
    room, (alice, _bob) = await _admins_room(server, 2)
    retries = hs.config.room_upgrades.max_state_conflict_retries
    assert retries == 5
    injected = 0

    async def change_state(room_id: str) -> None:
        nonlocal injected
        injected += 1
        await hs.sender.send(
            room_id, EventDraft("m.room.topic", alice.user_id, {"topic": f"t{injected}"}, "")
        )

    hs.room_upgrades.before_commit = change_state
    before = await table_counts(hs)
    events = record_domain_events(hs)
    status, answer = await upgrade(server, alice, room, "11")
    assert (status, answer) == (
        500,
        {"errcode": "M_UNKNOWN", "error": "Room upgrade could not be completed"},
    )
    assert injected == retries + 1
    assert [(e.name, e.payload) for e in events] == [
        ("room.upgrade.failed", {"room_id": room, "reason": "retries_exhausted"})
    ]
    assert await _status(hs, room) == "active"
    after = await table_counts(hs)
    # only the injected topic events (one event, one state group, no new current-state row)
    assert after["events"] == before["events"] + injected
    assert after["rooms"] == before["rooms"]
    assert after["room_upgrades"] == 0
    for table in ("room_aliases", "federation_outbox", "account_data", "push_rules"):
        assert after[table] == before[table]
    stray = await hs.store.db.fetchval(
        "SELECT COUNT(*) FROM events WHERE room_id NOT IN (SELECT room_id FROM rooms)"
    )
    assert int(stray) == 0
    last = (await hs.store.rooms.get_transitions(room))[-1]
    assert (last.from_status, last.to_status) == ("upgrading", "active")
    # and it can be upgraded afterwards
    hs.room_upgrades.before_commit = None
    status, _ = await upgrade(server, alice, room, "11")
    assert status == 200


async def test_messages_between_plan_and_commit_are_followed(server: TestServer) -> None:
    """A message (not state) arriving before the commit is no conflict: the tombstone is
    rebuilt inside the commit on the new extremities."""
    hs = server.hs
    room, (alice, _bob) = await _admins_room(server, 2)
    sent: list[str] = []

    async def say(room_id: str) -> None:
        event = await hs.sender.send(
            room_id,
            EventDraft("m.room.message", alice.user_id, {"msgtype": "m.text", "body": "hi"}),
        )
        sent.append(event.event_id)

    hs.room_upgrades.before_commit = say
    status, body = await upgrade(server, alice, room, "11")
    assert status == 200, body
    assert len(sent) == 1
    tombstone = await hs.store.state.get_current_state_event(room, "m.room.tombstone")
    assert tombstone is not None and tombstone.prev_event_ids() == (sent[0],)
    extremities = await hs.store.events.get_forward_extremities(room)
    assert len(extremities.event_ids) == 1


async def test_internal_error_releases_the_lock(
    server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hs = server.hs
    room, (alice, _bob) = await _admins_room(server, 2)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(upgrade_module, "build_upgrade", broken)
    events = record_domain_events(hs)
    before = await table_counts(hs)
    status, answer = await upgrade(server, alice, room, "11")
    assert (status, answer["errcode"]) == (500, "M_UNKNOWN")
    assert "boom" not in str(answer)
    assert events[-1].payload == {"room_id": room, "reason": "internal"}
    assert await _status(hs, room) == "active"
    assert await table_counts(hs) == before


async def test_fifty_concurrent_requests_from_the_same_user(server: TestServer) -> None:
    hs = server.hs
    room, (alice, _bob) = await _admins_room(server, 2)
    results = await asyncio.gather(*(upgrade(server, alice, room, "11") for _ in range(50)))
    assert {status for status, _ in results} == {200}
    assert len({body["replacement_room"] for _, body in results}) == 1
    assert int(await hs.store.db.fetchval("SELECT COUNT(*) FROM room_upgrades")) == 1
    assert await _status(hs, room) == "tombstoned"


async def test_fifty_concurrent_requests_from_different_admins(server: TestServer) -> None:
    hs = server.hs
    room, admins = await _admins_room(server, 50)
    results = await asyncio.gather(*(upgrade(server, admin, room, "11") for admin in admins))
    # Those that waited for the upgrade share its answer; those that came after it are refused
    # with the replacement named.
    winners = {body["replacement_room"] for status, body in results if status == 200}
    assert len(winners) == 1
    for status, body in results:
        if status != 200:
            assert (status, body["errcode"]) == (400, "M_BAD_STATE"), body
            assert {body["replacement_room"]} == winners
    assert int(await hs.store.db.fetchval("SELECT COUNT(*) FROM room_upgrades")) == 1
    tombstones = await hs.store.db.fetchval(
        "SELECT COUNT(*) FROM events WHERE type = 'm.room.tombstone'"
    )
    assert int(tombstones) == 1


async def test_two_homeservers_on_one_database_race(
    server: TestServer, hs_config: HomeserverConfig, open_test_database: OpenTestDatabase
) -> None:
    """Two Homeserver instances over two connection pools (as two processes would be):
    exactly one replacement room."""
    hs = server.hs
    room, admins = await _admins_room(server, 10)
    second = Homeserver(
        hs_config,
        generate_signing_key("b_test"),
        Store(await open_test_database(migrate=False)),
        clock=TickingClock(),
    )

    async def via(target: Homeserver, admin: TestUser) -> tuple[int, str]:
        try:
            new = await target.room_upgrades.upgrade_room(
                admin.user_id, room, {"new_version": "11"}
            )
        except Exception as e:  # MatrixError: the errcode is what matters
            return 400, getattr(e, "errcode", repr(e))
        return 200, new

    calls = []
    for i, admin in enumerate(admins):
        calls.append(via(hs if i % 2 else second, admin))
        calls.append(via(second if i % 2 else hs, admin))
    results = await asyncio.gather(*calls)
    replacements = {value for status, value in results if status == 200}
    assert len(replacements) == 1, results
    assert {value for status, value in results if status != 200} <= {"M_UNKNOWN", "M_BAD_STATE"}
    assert int(await hs.store.db.fetchval("SELECT COUNT(*) FROM room_upgrades")) == 1
