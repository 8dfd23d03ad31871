"""Typing and presence under hostile input, on both engines: ``rc_presence`` (Synapse's 0.1/s,
burst 1: PUT answers 429, a /sync's set_presence is ignored, each with its own bucket) and
``rc_typing`` (our key) past their burst; bodies of every shape (not JSON, not an object, wrong
types, huge numbers and strings, NUL, deep nesting, hostile path IDs) answered with a 4xx Matrix
error, never a 5xx, and a refused request stores nothing, wakes nobody and queues no EDU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.app import Homeserver
from homeserver.config import HomeserverConfig
from tests.builders import make_room
from tests.harness import TestServer, make_config
from tests.sync.helpers import sync

TIGHT = {"per_second": 0.0001, "burst_count": 2}

_DEEP = json.dumps(json.loads("[" * 200 + "]" * 200))
#: Raw bodies, sent as they are.
RAW_BODIES: list[bytes] = [
    b"",
    b"not json",
    b"[]",
    b'"typing"',
    b"null",
    b"1e999",
    b'{"typing": true, "timeout": 1e999}',
    b'{"typing": true, "timeout": NaN}',
    b'{"presence": "online", "status_msg": "\\u0000"}',
    b'{"typing": true, "typing": "x"}',
    b'{"presence": "online", "status_msg": "\\ud800"}',
    b"\xff\xfe",
    ('{"presence": ' + _DEEP + "}").encode(),
]
#: JSON bodies (objects of the wrong shape for one endpoint or both).
JSON_BODIES: list[Any] = [
    {},
    {"typing": None},
    {"typing": "true"},
    {"typing": [True]},
    {"typing": True, "timeout": -5},
    {"typing": True, "timeout": {"ms": 1}},
    {"presence": None},
    {"presence": "ONLINE"},
    {"presence": "busy"},
    {"presence": ["online"]},
    {"presence": "online", "status_msg": "x" * 70_000},
    {"presence": "online", "status_msg": ["x"]},
    {"presence": "online", "status_msg": {"x": 1}},
    {"presence": "online", "currently_active": True},
    {"presence": "online\x00"},
]


@pytest.fixture
def hs_config(tmp_path: Path, request: pytest.FixtureRequest) -> HomeserverConfig:
    return make_config(tmp_path, **getattr(request, "param", {}))


async def test_presence_rate_limited_as_synapse(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    path = f"/presence/{alice.user_id}/status"
    assert (await server.call("PUT", path, alice, json={"presence": "online"}))[0] == 200
    status, body = await server.call("PUT", path, alice, json={"presence": "unavailable"})
    assert (status, body["errcode"]) == (429, "M_LIMIT_EXCEEDED")
    assert body["retry_after_ms"] > 0
    stored = await hs.store.presence.get(alice.user_id)
    assert stored is not None and stored.state == "online"
    # /sync has its own bucket: the first set_presence counts, the next is ignored (not refused).
    await sync(server, alice, set_presence="unavailable")
    assert (await hs.store.presence.get(alice.user_id)).state == "unavailable"  # type: ignore[union-attr]
    await sync(server, alice, set_presence="online")
    assert (await hs.store.presence.get(alice.user_id)).state == "unavailable"  # type: ignore[union-attr]


@pytest.mark.parametrize("hs_config", [{"rc_typing": TIGHT}], indirect=True)
async def test_typing_rate_limited(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    room_id = await make_room(hs, alice.user_id)
    path = f"/rooms/{room_id}/typing/{alice.user_id}"
    answers = [
        await server.call("PUT", path, alice, json={"typing": t}) for t in (True, False, True)
    ]
    assert [s for s, _ in answers] == [200, 200, 429]
    assert answers[2][1]["errcode"] == "M_LIMIT_EXCEEDED"
    assert hs.typing.typers(room_id) == []


@pytest.mark.parametrize(
    "hs_config",
    [{"rc_typing": {"per_second": 1000, "burst_count": 1000}, "rc_presence": TIGHT}],
    indirect=True,
)
async def test_hostile_typing_and_presence_bodies(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    room_id = await make_room(hs, alice.user_id)
    typing_path = f"/rooms/{room_id}/typing/{alice.user_id}"
    presence_path = f"/presence/{alice.user_id}/status"
    position, generation = hs.typing.position, hs.notifier.generation
    statuses: set[int] = set()

    async def check(path: str, *, data: bytes | None = None, body: Any = None) -> None:
        status, answer = await server.call(
            "PUT",
            path,
            alice,
            data=data,
            json=body,
            headers={"Content-Type": "application/json"} if data is not None else None,
        )
        statuses.add(status)
        assert 400 <= status < 500, (path, data, body, status, answer)
        assert isinstance(answer, dict) and answer.get("errcode", "").startswith("M_"), answer

    for path in (typing_path, presence_path):
        for raw in RAW_BODIES:
            await check(path, data=raw)
        for body in JSON_BODIES:
            await check(path, body=body)
    # A huge timeout is capped (at Synapse's 120 s), not refused.
    huge = b'{"typing": true, "timeout": 99999999999999999999999999}'
    status, _ = await server.call("PUT", typing_path, alice, data=huge)
    assert status == 200 and hs.typing.typers(room_id) == [alice.user_id]
    await server.call("PUT", typing_path, alice, json={"typing": False})
    position, generation = hs.typing.position, hs.notifier.generation
    await hs.store.outbox.delete(
        [
            e.id
            for d in await hs.store.outbox.destinations_with_entries()
            for e in await hs.store.outbox.head(d, 100)
        ]
    )
    # Hostile IDs in the path.
    for room in ("x", "!\x00:test.example", "!" + "a" * 4_000, "%00"):
        await check(
            f"/rooms/{quote(room, safe='')}/typing/{quote(alice.user_id)}",
            body={"typing": True},
        )
    for user in ("@alice:test.example\x00", "alice", "@" + "a" * 4_000 + ":test.example"):
        await check(f"/rooms/{room_id}/typing/{quote(user, safe='')}", body={"typing": True})
        await check(f"/presence/{quote(user, safe='')}/status", body={"presence": "online"})
    status, _ = await server.call(
        "GET", "/presence/" + quote("@\x00:test.example", safe="") + "/status", alice
    )
    assert 400 <= status < 500
    assert 500 not in statuses

    # Nothing stored, nobody woken, nothing queued.
    assert hs.typing.typers(room_id) == [] and hs.typing.position == position
    assert hs.notifier.generation == generation
    stored = await hs.store.presence.get(alice.user_id)  # online from typing (activity)
    assert stored is not None and stored.stream_id == await hs.store.presence.get_position()
    assert await hs.store.outbox.destinations_with_entries() == []
    # The refusals spent no rc_presence token: a good PUT still goes through.
    assert (await server.call("PUT", presence_path, alice, json={"presence": "online"}))[0] == 200
