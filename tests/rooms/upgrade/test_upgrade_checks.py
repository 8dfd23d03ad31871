"""Every check of POST /rooms/{roomId}/upgrade and its error, on both engines; a refused
request leaves no trace and publishes ``room.upgrade.failed`` with its reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from homeserver.config import HomeserverConfig
from tests.builders import create_room, generous_config
from tests.harness import TestServer, make_config
from tests.rooms.upgrade.helpers import join, record_domain_events, table_counts, upgrade


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def _refused(
    server: TestServer, user_name: str, room_id: str, body: object
) -> tuple[int, dict[str, str]]:
    user = await server.register(user_name)
    return await server.call("POST", f"/rooms/{room_id}/upgrade", user, json=body)


async def test_refusals_leave_no_trace(server: TestServer) -> None:
    hs = server.hs
    alice = await server.register("alice")
    bob = await server.register("bob")
    room = await create_room(server, alice, preset="public_chat", room_version="10")
    await join(server, room, bob)
    events = record_domain_events(hs)
    before = await table_counts(hs)

    cases: list[tuple[object, str, int, str, str]] = [
        # (body, room, status, errcode, reason on the bus)
        ({}, room, 400, "M_MISSING_PARAM", "invalid_request"),
        ({"new_version": "999"}, room, 400, "M_UNSUPPORTED_ROOM_VERSION", "unsupported_version"),
        ({"new_version": 11}, room, 400, "M_UNSUPPORTED_ROOM_VERSION", "unsupported_version"),
        (
            {"new_version": "12", "additional_creators": "@x:test.example"},
            room,
            400,
            "M_INVALID_PARAM",
            "invalid_request",
        ),
        (
            {"new_version": "12", "additional_creators": ["not a user"]},
            room,
            400,
            "M_INVALID_PARAM",
            "invalid_request",
        ),
        (
            {"new_version": "12", "additional_creators": [5]},
            room,
            400,
            "M_INVALID_PARAM",
            "invalid_request",
        ),
        ({"new_version": "11"}, "!nope:test.example", 404, "M_NOT_FOUND", "not_found"),
        ({"new_version": "11"}, "not-a-room", 400, "M_INVALID_PARAM", "invalid_request"),
    ]
    for body, room_id, status, errcode, reason in cases:
        events.clear()
        got, answer = await server.call("POST", f"/rooms/{room_id}/upgrade", alice, json=body)
        assert (got, answer["errcode"]) == (status, errcode), (body, answer)
        assert [(e.name, e.payload) for e in events] == [
            ("room.upgrade.failed", {"room_id": room_id, "reason": reason})
        ]

    # bob is joined but below the tombstone level; carol is not in the room at all
    for user, name in ((bob, None), (None, "carol")):
        events.clear()
        if user is None:
            got, answer = await _refused(server, name or "", room, {"new_version": "11"})
        else:
            got, answer = await upgrade(server, user, room, "11")
        assert (got, answer["errcode"]) == (403, "M_FORBIDDEN")
        assert events[0].payload == {"room_id": room, "reason": "forbidden"}

    # a body that is not JSON never reaches the service
    got, answer = await server.call("POST", f"/rooms/{room}/upgrade", alice, data="{")
    assert got == 400 and answer["errcode"] == "M_NOT_JSON"
    # no access token
    got, answer = await server.call("POST", f"/rooms/{room}/upgrade", json={"new_version": "11"})
    assert got == 401

    after = await table_counts(hs)
    # (carol's registration wrote no room rows)
    assert after == before
    record = await hs.store.rooms.get_room(room)
    assert record is not None and record.status == "active"


async def test_additional_creators_ignored_for_versions_without_creators(
    server: TestServer,
) -> None:
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="public_chat", room_version="10")
    status, body = await upgrade(server, alice, room, "11", additional_creators="junk")
    assert status == 200, body


async def test_already_tombstoned_room(server: TestServer) -> None:
    hs = server.hs
    alice = await server.register("alice")
    bob = await server.register("bob")
    room = await create_room(
        server,
        alice,
        preset="public_chat",
        room_version="10",
        power_level_content_override={
            "users": {"@alice:test.example": 100, "@bob:test.example": 100}
        },
    )
    await join(server, room, bob)
    status, body = await upgrade(server, alice, room, "11")
    assert status == 200
    replacement = body["replacement_room"]
    events = record_domain_events(hs)

    # the same user again, later: the same answer (stored, not cached)
    assert await upgrade(server, alice, room, "11") == (200, {"replacement_room": replacement})
    # … even asking for another version: the room is not upgraded twice
    assert await upgrade(server, alice, room, "12") == (200, {"replacement_room": replacement})
    # another admin: 400 M_BAD_STATE naming the replacement
    status, answer = await upgrade(server, bob, room, "11")
    assert status == 400 and answer["errcode"] == "M_BAD_STATE"
    assert replacement in answer["error"] and answer["replacement_room"] == replacement
    assert events[-1].payload == {"room_id": room, "reason": "already_tombstoned"}
    assert int(await hs.store.db.fetchval("SELECT COUNT(*) FROM room_upgrades")) == 1
    assert await hs.store.rooms.get_public_room_ids() == []


async def test_hand_sent_tombstone_then_upgrade(server: TestServer) -> None:
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="public_chat", room_version="10")
    other = await create_room(server, alice, preset="public_chat", room_version="10")
    status, _ = await server.call(
        "PUT",
        f"/rooms/{room}/state/m.room.tombstone",
        alice,
        json={"body": "moved", "replacement_room": other},
    )
    assert status == 200
    status, answer = await upgrade(server, alice, room, "11")
    assert status == 400 and answer["errcode"] == "M_BAD_STATE"
    assert answer["replacement_room"] == other


async def test_hand_sent_tombstone_refused_while_upgrading(server: TestServer) -> None:
    hs = server.hs
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="public_chat", room_version="10")
    assert await hs.store.rooms.transition(
        room,
        "active",
        "upgrading",
        actor="requester",
        reason="test",
        ts=hs.clock(),
        upgrade_lock_holder=alice.user_id,
        upgrade_lock_expires_ts=hs.clock() + 60_000,
    )
    status, answer = await server.call(
        "PUT",
        f"/rooms/{room}/state/m.room.tombstone",
        alice,
        json={"body": "moved", "replacement_room": "!x:test.example"},
    )
    # The same answer as a second upgrade gets (one message, one code).
    assert status == 400 and answer["errcode"] == "M_UNKNOWN"


class TestRateLimit:
    @pytest.fixture
    def hs_config(self, tmp_path: Path) -> HomeserverConfig:
        return make_config(
            tmp_path,
            rc_room_creation={"per_second": 0.001, "burst_count": 2},
            rc_message={"per_second": 1000, "burst_count": 1000},
        )

    async def test_upgrades_share_the_room_creation_limit(self, server: TestServer) -> None:
        hs = server.hs
        alice = await server.register("alice")
        first = await create_room(server, alice, preset="public_chat", room_version="10")
        await create_room(server, alice, preset="public_chat", room_version="10")
        events = record_domain_events(hs)
        status, answer = await upgrade(server, alice, first, "11")
        assert status == 429 and answer["errcode"] == "M_LIMIT_EXCEEDED"
        assert "retry_after_ms" in answer
        assert events[-1].payload == {"room_id": first, "reason": "rate_limited"}
        room = await hs.store.rooms.get_room(first)
        assert room is not None and room.status == "active"
