"""Domain events and their subscribers (audit log, metrics) for upgrades; start-up recovery
through ``start_homeserver``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from homeserver.app import start_homeserver
from homeserver.config import HomeserverConfig
from homeserver.metrics import ROOM_OPERATIONS
from tests.builders import create_room, generous_config
from tests.harness import TestServer, make_config
from tests.rooms.upgrade.helpers import record_domain_events, upgrade


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def test_upgraded_and_failed_events(
    server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    hs = server.hs
    alice = await server.register("alice")
    bob = await server.register("bob")
    room = await create_room(server, alice, preset="public_chat", room_version="10")
    events = record_domain_events(hs)
    with caplog.at_level(logging.INFO, logger="homeserver.audit"):
        status, body = await upgrade(server, alice, room, "12")
        assert status == 200
        status, _ = await upgrade(server, bob, room, "12")
        assert status == 403
    new = body["replacement_room"]
    assert [(e.name, e.payload) for e in events] == [
        ("room.upgraded", {"old_room_id": room, "new_room_id": new, "new_version": "12"}),
        ("room.upgrade.failed", {"room_id": room, "reason": "forbidden"}),
    ]
    operations = {
        outcome: hs.metrics.value(ROOM_OPERATIONS, operation="upgrade", outcome=outcome)
        for outcome in ("room_upgraded", "room_upgrade_failed", "rate_limited")
    }
    assert operations == {"room_upgraded": 1, "room_upgrade_failed": 1, "rate_limited": 0}
    audit = [r.getMessage() for r in caplog.records if r.name == "homeserver.audit"]
    assert any('"event": "room.upgraded"' in line and new in line for line in audit)
    assert any('"reason": "forbidden"' in line for line in audit)


async def test_start_homeserver_recovers_stranded_upgrades(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    environ = {"HOMESERVER_SECRETS_KEY": "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s="}
    hs = await start_homeserver(config, environ=environ)
    try:
        created = await hs.room_creation.create_room(
            "@alice:test.example", {"preset": "public_chat"}
        )
        now = hs.clock()
        assert await hs.store.rooms.transition(
            created.room_id,
            "active",
            "upgrading",
            actor="requester",
            reason="test",
            ts=now,
            upgrade_lock_holder="@alice:test.example",
            upgrade_lock_expires_ts=now + 3_600_000,
        )
    finally:
        await hs.store.db.close()
    hs = await start_homeserver(config, environ=environ)
    try:
        room = await hs.store.rooms.get_room(created.room_id)
        assert room is not None and room.status == "active"
        last = (await hs.store.rooms.get_transitions(created.room_id))[-1]
        assert last.reason == "recovered at start-up"
    finally:
        await hs.store.db.close()
