"""``limited`` in /sync claims no history the user may not see, on both engines: a late joiner
of a ``joined`` room whose every earlier event but the room's first few is hidden from him gets
``limited: false`` once his timeline holds all he may see (initial sync, and the incremental
sync that brings his join), and the ``prev_batch`` he is handed leads /messages to nothing more.
When visible history does lie beyond the timeline (the room's genesis, under ``shared`` before
the visibility was set), ``limited`` is true and /messages from ``prev_batch`` reaches it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig
from tests.builders import generous_config, make_room
from tests.harness import TestServer as Server
from tests.harness import TestUser
from tests.visibility.test_client_paths import act, joined_timeline, send, sync

#: the room's genesis events, visible to a later member (sent before the visibility was set,
#: or the visibility event itself).
GENESIS = 5


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


def limit(n: int) -> str:
    return json.dumps({"room": {"timeline": {"limit": n}}})


async def messages_before(
    server: Server, user: TestUser, room_id: str, token: str
) -> dict[str, Any]:
    status, body = await server.call(
        "GET", f"/rooms/{room_id}/messages", user, params={"dir": "b", "from": token}
    )
    assert status == 200, body
    return body


async def late_joiner(server: Server, hidden: int) -> tuple[TestUser, TestUser, str, str]:
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(server.hs, alice.user_id, history_visibility="joined")
    before = (await sync(server, bob))["next_batch"]
    for i in range(hidden):
        await send(server, alice, room_id, f"secret{i}")
    await act(server, bob, room_id, "join")
    await send(server, alice, room_id, "after")
    return alice, bob, room_id, before


async def test_all_bob_may_see_fits_the_timeline(server: Server):
    _alice, bob, room_id, before = await late_joiner(server, hidden=30)
    visible = GENESIS + 2  # the genesis, his join, "after"
    for n in (visible, visible + 3):
        for since in (None, before):  # initial; the incremental sync bringing his join
            params = {"filter": limit(n)} | ({"since": since} if since else {})
            timeline = joined_timeline(await sync(server, bob, **params), room_id)
            assert len(timeline["events"]) == visible
            assert timeline["limited"] is False, (n, since)
            older = await messages_before(server, bob, room_id, timeline["prev_batch"])
            assert older["chunk"] == [] and "end" not in older


async def test_visible_history_beyond_the_timeline_is_limited(server: Server):
    _alice, bob, room_id, before = await late_joiner(server, hidden=30)
    for since in (None, before):
        params = {"filter": limit(GENESIS)} | ({"since": since} if since else {})
        timeline = joined_timeline(await sync(server, bob, **params), room_id)
        assert timeline["limited"] is True
        older = await messages_before(server, bob, room_id, timeline["prev_batch"])
        seen = {e["event_id"] for e in timeline["events"]}
        assert len(older["chunk"]) == 2 and not seen & {e["event_id"] for e in older["chunk"]}
        assert [e["type"] for e in older["chunk"]][-1] == "m.room.create"


async def test_hidden_history_longer_than_the_scan(server: Server):
    # More hidden events than one sync scans: limited (the genesis beyond is his to see), and
    # /messages from prev_batch goes through the hidden stretch to it.
    _alice, bob, room_id, _before = await late_joiner(server, hidden=120)
    timeline = joined_timeline(await sync(server, bob), room_id)  # the default limit, 10
    assert timeline["limited"] is True
    older = await messages_before(server, bob, room_id, timeline["prev_batch"])
    assert len(timeline["events"]) + len(older["chunk"]) == GENESIS + 2
    assert older["chunk"][-1]["type"] == "m.room.create"
