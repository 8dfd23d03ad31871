"""``POST /_synapse/admin/v1/purge_history`` (background, status persisted), its status and
``GET /v1/scheduled_tasks``: what a purge deletes, and that the room's DAG still holds after it
(state, auth chains, extremities; the room keeps working; backfill answers)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from homeserver.app import Homeserver
from homeserver.config import HomeserverConfig
from tests.admin.helpers import V1, join
from tests.builders import create_room, generous_config
from tests.harness import TestServer, TestUser

_TXN = itertools.count()


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


@pytest.fixture(autouse=True)
async def purges_finish(hs: Homeserver) -> AsyncIterator[None]:
    yield
    await hs.history_purge.wait_idle()


async def _say(server: TestServer, user: TestUser, room: str, text: str) -> str:
    status, body = await server.call(
        "PUT",
        f"/rooms/{room}/send/m.room.message/t{next(_TXN)}",
        user,
        json={"msgtype": "m.text", "body": text},
    )
    assert status == 200, body
    return str(body["event_id"])


async def _purge(server: TestServer, admin: TestUser, path: str, body: dict[str, object]) -> str:
    status, answer = await server.call("POST", f"{V1}/purge_history/{path}", admin, json=body)
    assert status == 200 and set(answer) == {"purge_id"}, answer
    purge_id = str(answer["purge_id"])
    await server.hs.history_purge.wait(purge_id)
    return purge_id


async def test_purge_history_keeps_the_dag(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    bob = await server.register("bob")
    store = server.hs.store
    room = await create_room(server, alice, preset="public_chat", name="History")
    await join(server, bob, room)
    old = [await _say(server, alice, room, f"old {n}") for n in range(3)]
    status, topic = await server.call(
        "PUT", f"/rooms/{room}/state/m.room.topic", alice, json={"topic": "kept"}
    )
    assert status == 200
    status, _ = await server.call(
        "PUT",
        f"/rooms/{room}/send/m.reaction/t{next(_TXN)}",
        bob,
        json={"m.relates_to": {"rel_type": "m.annotation", "event_id": old[0], "key": "x"}},
    )
    assert status == 200
    status, _ = await server.call("POST", f"/rooms/{room}/receipt/m.read/{old[1]}", bob, json={})
    assert status == 200
    cut = await _say(server, alice, room, "the cut")
    after = await _say(server, bob, room, "after")
    state_before = await store.state.get_current_state_ids(room)

    # Local events are kept by default: nothing of ours goes.
    purge_id = await _purge(server, admin, f"{room}/{cut}", {})
    status, body = await server.call("GET", f"{V1}/purge_history_status/{purge_id}", admin)
    assert (status, body) == (200, {"status": "complete"})
    assert await store.events.get_event(old[0]) is not None

    # With delete_local_events: the messages (and the reaction) before the cut go.
    purge_id = await _purge(
        server, admin, room, {"purge_up_to_event_id": cut, "delete_local_events": True}
    )
    status, body = await server.call("GET", f"{V1}/purge_history_status/{purge_id}", admin)
    assert body == {"status": "complete"}
    for event_id in old:
        assert await store.events.get_event(event_id) is None
    for table in ("event_relations", "event_search", "event_edges", "event_to_state_groups"):
        count = await store.db.fetchval(
            f"SELECT COUNT(*) FROM {table} WHERE event_id IN (?, ?, ?)", *old
        )
        assert int(count) == 0, table
    # The DAG holds: every state event, the current state, the cut and what follows, and the
    # auth chain of every remaining event.
    assert await store.state.get_current_state_ids(room) == state_before
    assert await store.events.get_event(topic["event_id"]) is not None
    for event_id in (cut, after):
        assert await store.events.get_event(event_id) is not None
    rows = await store.db.fetchall("SELECT event_id FROM events WHERE room_id = ?", room)
    remaining = await store.events.get_events([r[0] for r in rows])
    for event in remaining.values():
        for auth_id in event.auth_event_ids():
            assert auth_id in remaining, (event.event_id, auth_id)
    extremities = await store.events.get_forward_extremities(room)
    assert extremities.event_ids == [after]
    # Bob's receipt moved to the newest kept event before the purged one.
    receipt = await store.db.fetchval(
        "SELECT event_id FROM receipts WHERE room_id = ? AND user_id = ?", room, bob.user_id
    )
    assert receipt in remaining
    # Clients no longer see the purged messages; the room keeps working.
    status, page = await server.call("GET", f"/rooms/{room}/messages", bob, params={"limit": "50"})
    assert status == 200
    seen = [e["event_id"] for e in page["chunk"]]
    assert after in seen and cut in seen and not set(old) & set(seen)
    newest = await _say(server, bob, room, "still works")
    status, _ = await server.call("GET", "/sync", bob)
    assert status == 200
    # Another server asking for history gets what is left, never an error.
    answer = await server.hs.federation_events.backfill("test.example", room, [newest], 50)
    assert {p["content"].get("body") for p in answer["pdus"]} >= {"still works", "after"}

    # scheduled_tasks lists both purges, with Synapse's keys.
    status, body = await server.call("GET", f"{V1}/scheduled_tasks", admin)
    assert status == 200, body
    tasks = [t for t in body["scheduled_tasks"] if t["action"] == "purge_history"]
    assert len(tasks) == 2 and tasks[-1]["id"] == purge_id
    assert set(tasks[-1]) == {
        "id",
        "action",
        "status",
        "timestamp_ms",
        "resource_id",
        "result",
        "error",
    }
    assert tasks[-1]["status"] == "complete" and tasks[-1]["resource_id"] == room
    assert tasks[-1]["timestamp_ms"] > 10**12
    for params, expected in (
        ({"action_name": "purge_history"}, 2),
        ({"action_name": "shutdown_room"}, 0),
        ({"resource_id": "!other:test.example"}, 0),
        ({"status": "complete"}, 2),
        ({"max_timestamp": "1"}, 0),
    ):
        status, body = await server.call("GET", f"{V1}/scheduled_tasks", admin, params=params)
        assert status == 200 and len(body["scheduled_tasks"]) == expected, (params, body)


async def test_purge_by_time_bad_requests_and_resume(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    store = server.hs.store
    room = await create_room(server, alice)
    first = await _say(server, alice, room, "first")
    event = await store.events.get_event(first)
    assert event is not None
    second = await _say(server, alice, room, "second")
    other = await create_room(server, alice)
    ts = event.origin_server_ts + 1
    second_event = await store.events.get_event(second)
    assert second_event is not None
    await store.db.run_in_transaction(
        "test_age",
        lambda txn: txn.execute(
            "UPDATE events SET origin_server_ts = ? WHERE event_id = ?", ts + 5, second
        ),
    )
    await _purge(server, admin, room, {"purge_up_to_ts": ts, "delete_local_events": True})
    assert await store.events.get_event(first) is None
    assert await store.events.get_event(second) is not None

    before = int(await store.db.fetchval("SELECT COUNT(*) FROM purge_history"))
    for path, body, code in (
        (room, {}, 400),
        (room, {"purge_up_to_ts": "soon"}, 400),
        (room, {"purge_up_to_ts": 1}, 400),  # nothing that old
        (room, {"purge_up_to_event_id": 5}, 400),
        (room, {"purge_up_to_ts": ts, "delete_local_events": "yes"}, 400),
        (f"{room}/{second}", {"delete_local_events": 1}, 400),
        (f"{other}/{second}", {}, 400),  # the event is not that room's
        ("!unknown:test.example", {"purge_up_to_ts": ts}, 404),
        ("not-a-room", {"purge_up_to_ts": ts}, 400),
    ):
        status, answer = await server.call("POST", f"{V1}/purge_history/{path}", admin, json=body)
        assert status == code, (path, body, answer)
        assert "errcode" in answer
    assert int(await store.db.fetchval("SELECT COUNT(*) FROM purge_history")) == before
    status, answer = await server.call("GET", f"{V1}/purge_history_status/nope", admin)
    assert status == 404

    # One purge of a room at a time; an unfinished one resumes after a restart.
    assert await store.history_purge.add("pending", room, {"before_depth": 1}, 1)
    status, answer = await server.call(
        "POST", f"{V1}/purge_history/{room}/{second}", admin, json={}
    )
    assert status == 400 and "already in progress" in answer["error"]
    await server.hs.history_purge.resume()
    await server.hs.history_purge.wait("pending")
    status, answer = await server.call("GET", f"{V1}/purge_history_status/pending", admin)
    assert answer == {"status": "complete"}
