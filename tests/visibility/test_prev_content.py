"""``unsigned.replaces_state`` / ``prev_content`` / ``prev_sender`` on both engines: recorded at
persistence, shown on /sync timelines, /messages and /context (as Synapse), pruned when the
replaced event was redacted, absent where nothing was replaced."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from homeserver.app import Homeserver
from tests.builders import join, make_room
from tests.harness import TestServer, TestUser
from tests.sync.helpers import sync


async def set_topic(server: TestServer, user: TestUser, room_id: str, topic: str) -> str:
    status, body = await server.call(
        "PUT", f"/rooms/{room_id}/state/m.room.topic", user, json={"topic": topic}
    )
    assert status == 200, body
    return str(body["event_id"])


def by_id(events: list[dict[str, Any]], event_id: str) -> dict[str, Any]:
    return next(e for e in events if e["event_id"] == event_id)


async def test_prev_content_after_a_topic_change(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await make_room(hs, alice.user_id, power_levels={"events": {"m.room.topic": 0}})
    await join(hs, room_id, bob.user_id)
    first = await set_topic(server, alice, room_id, "one")
    # Cold caches: the replaced event is found through the stored state groups.
    hs.store.state.clear_cache()
    second = await set_topic(server, bob, room_id, "two")

    body = await sync(server, alice)
    timeline = body["rooms"]["join"][room_id]["timeline"]["events"]
    unsigned = by_id(timeline, second)["unsigned"]
    assert unsigned["replaces_state"] == first
    assert unsigned["prev_content"] == {"topic": "one"}
    assert unsigned["prev_sender"] == alice.user_id
    # The first topic replaced nothing.
    assert not {"replaces_state", "prev_content"} & set(by_id(timeline, first)["unsigned"])
    # bob's join replaced nothing; the create event neither.
    state = body["rooms"]["join"][room_id]["state"]["events"]
    assert all("prev_content" not in e["unsigned"] for e in state)

    status, page = await server.call("GET", f"/rooms/{room_id}/messages", bob, params={"dir": "b"})
    assert status == 200
    assert by_id(page["chunk"], second)["unsigned"]["prev_content"] == {"topic": "one"}
    status, context = await server.call(
        "GET", f"/rooms/{room_id}/context/{quote(second)}", bob, params={"limit": "2"}
    )
    assert status == 200, context
    assert context["event"]["unsigned"]["prev_content"] == {"topic": "one"}
    assert context["event"]["unsigned"]["prev_sender"] == alice.user_id
    # /event names the replaced event (Synapse adds no prev_content there).
    status, single = await server.call("GET", f"/rooms/{room_id}/event/{quote(second)}", bob)
    assert status == 200
    assert single["unsigned"]["replaces_state"] == first


async def test_prev_content_of_a_redacted_state_event_is_pruned(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    room_id = await make_room(hs, alice.user_id)
    secret = await set_topic(server, alice, room_id, "the secret")
    status, body = await server.call(
        "PUT", f"/rooms/{room_id}/redact/{quote(secret, safe='')}/t1", alice, json={}
    )
    assert status == 200, body
    after = await set_topic(server, alice, room_id, "public")
    for params in ({"dir": "b"}, {"dir": "b", "limit": "1"}):
        status, page = await server.call("GET", f"/rooms/{room_id}/messages", alice, params=params)
        assert status == 200
        unsigned = by_id(page["chunk"], after)["unsigned"]
        assert unsigned["replaces_state"] == secret
        assert unsigned["prev_content"] == {}
        assert "the secret" not in str(page)
    synced = await sync(server, alice)
    assert "the secret" not in str(synced)
