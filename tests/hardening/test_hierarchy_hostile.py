"""Hostile input against /hierarchy, /room_summary and the federation /hierarchy: clear 4xx
errors, never a 5xx, and nothing stored by a refused request; a hostile server's answers (a
cycle back into our space, hundreds of links) end the walk within a page."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.config import HomeserverConfig
from homeserver.events.draft import EventDraft
from tests.builders import generous_config, make_room
from tests.federation.received_helpers import Remote, signed_request
from tests.harness import TestServer as Server
from tests.harness import TestUser as User

V1 = "/_matrix/client/v1"
FED = "/_matrix/federation/v1/hierarchy/"
LOOP = "!loop:evil.example"
HOSTILE_ROOMS = [
    "x", "!", "!:", "#", "#:", "%00", "%ED%A0%80", "!a%00b:test.example", "#a%00:test.example",
    quote("!" + "r" * 300 + ":test.example"), "..", "%2F", "@u:test.example", "$e",
]  # fmt: skip
HOSTILE_QUERIES = [
    "limit=-1", "limit=99999999999999999999999", "limit=1e3", "max_depth=NaN",
    "max_depth=-5", "suggested_only=%00", "from=%00", "from=" + "x" * 5000, "via=%00",
    "via=" + "a" * 300, "limit=%ED%A0%80",
]  # fmt: skip


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def sessions(server: Server) -> int:
    return int(await server.hs.store.db.fetchval("SELECT COUNT(*) FROM room_hierarchy_sessions"))


async def hostile_paths_and_queries(server: Server, alice: User, space: str) -> None:
    remote = Remote()
    await remote.seed_key(server.hs)
    headers = {"Authorization": f"Bearer {alice.access_token}"}
    targets = [f"{V1}/rooms/{room}/hierarchy" for room in HOSTILE_ROOMS]
    targets += [f"{V1}/room_summary/{room}" for room in HOSTILE_ROOMS]
    targets += [f"{V1}/rooms/{quote(space)}/hierarchy?{q}" for q in HOSTILE_QUERIES]
    targets += [f"{V1}/room_summary/{quote(space)}?{q}" for q in HOSTILE_QUERIES]
    for target in targets:
        status, text = await server.call_exact("GET", target, headers=headers)
        assert 400 <= status < 500 or status == 200, (target, status, text)
        assert status == 200 or '"errcode"' in text, target
    for room in HOSTILE_ROOMS:
        status, body = await signed_request(server, remote, "GET", FED + room)
        assert 400 <= status < 500 and "errcode" in body, (room, status, body)
    for query in HOSTILE_QUERIES:
        status, body = await signed_request(server, remote, "GET", f"{FED}{quote(space)}?{query}")
        assert status < 500, (query, status, body)
    assert await sessions(server) == 0


class HostileFederation:
    """Answers every room as a public space linking back into our space, itself, and 300
    rooms more."""

    def __init__(self, our_space: str) -> None:
        self.our_space = our_space
        self.asked = 0

    async def get_json(self, destination: str, path: str, query: Any = None, **_: Any) -> Any:
        self.asked += 1
        room_id = path.removeprefix(FED).replace("%21", "!").replace("%3A", ":")
        targets = [self.our_space, LOOP] + [f"!n{i}:evil.example" for i in range(300)]
        links = [
            {"type": "m.space.child", "state_key": t, "content": {"via": ["evil.example"]}}
            for t in targets
        ]
        room = {"room_id": room_id, "room_type": "m.space", "join_rule": "public"}
        return {"room": {**room, "children_state": links}, "children": []}


async def test_hostile_input_and_a_hostile_server(server: Server) -> None:
    # One server for both halves: every storage test pays a fresh database per engine.
    alice = await server.register("alice")
    space = await make_room(server.hs, alice.user_id, room_type="m.space")
    await hostile_paths_and_queries(server, alice, space)
    content = {"via": ["evil.example"]}
    await server.hs.sender.send(space, EventDraft("m.space.child", alice.user_id, content, LOOP))
    stub = HostileFederation(space)
    server.hs.remote_hierarchy.client = stub  # type: ignore[assignment]
    status, body = await server.call("GET", f"{V1}/rooms/{space}/hierarchy", alice)
    assert status == 200, body
    rooms = [r["room_id"] for r in body["rooms"]]
    assert len(rooms) == 50 == len(set(rooms)) and rooms[:2] == [space, LOOP]
    assert stub.asked == 49 and "next_batch" in body
    # The remote's answers are capped before they are kept.
    assert len(body["rooms"][1]["children_state"]) == 302
    assert await sessions(server) == 1
