"""Hostile bodies and parameters against key backup (/room_keys, issue 15): valid bodies with one
part replaced by something hostile (wrong types, NUL, lone surrogates, huge numbers, deep
nesting, 70 kB strings), bodies that are not JSON, hostile versions, room and session IDs. For
every example, on both engines: no 5xx, a Matrix error on a refusal, and a refused request
stored nothing (every row of the backup tables is the same before and after)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.storage import Store
from tests.fuzz.strategies import dumps_json, encode_segment, json_values, non_json_bodies
from tests.harness import TestServer as Server
from tests.harness import TestUser as User

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
ROOM = "!room:test.example"
_KEY = {
    "first_message_index": 1,
    "forwarded_count": 0,
    "is_verified": False,
    "session_data": {"ephemeral": "e", "ciphertext": "c", "mac": "m"},
}
_VERSION_BODY = {"algorithm": ALGORITHM, "auth_data": {"public_key": "k", "signatures": {}}}
#: (method, path after /room_keys, valid body); {room} and {session} are filled per example.
_ENDPOINTS: list[tuple[str, str, Any]] = [
    ("PUT", "/keys", {"rooms": {ROOM: {"sessions": {"s1": _KEY, "s2": _KEY}}}}),
    ("PUT", "/keys/{room}", {"sessions": {"s1": _KEY}}),
    ("PUT", "/keys/{room}/{session}", _KEY),
    ("POST", "/version", _VERSION_BODY),
    ("PUT", "/version/{version}", _VERSION_BODY),
]
_HOSTILE_IDS = ["", "\x00", "a\x00b", "\ud800", "x" * 300, "%", "..", "𝕏" * 100, " "]
_HOSTILE_VERSIONS = ["", "0", "-1", "1.0", "1e3", "99999999999999999999", "\x00", "\ud800", "x"]
_TABLES = ("e2e_room_keys_users", "e2e_room_keys_versions", "e2e_room_keys")


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value that can be replaced (the root excluded)."""
    found: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            found.append((*prefix, key))
            found.extend(paths(child, (*prefix, key)))
    return found


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    copied = copy.deepcopy(value)
    target = copied
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return copied


async def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: sorted(map(repr, await store.db.fetchall(f"SELECT * FROM {table}")))
        for table in _TABLES
    }


async def _setup(server: Server) -> User:
    cached = getattr(server, "_room_keys_user", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    alice = await server.register("alice")
    status, answer = await server.call("POST", "/room_keys/version", alice, json=_VERSION_BODY)
    assert status == 200, answer
    server._room_keys_user = alice  # type: ignore[attr-defined]
    return alice


@settings(max_examples=120)
@given(data=st.data())
async def test_hostile_room_keys_requests(server: Server, data: st.DataObject) -> None:
    alice = await _setup(server)
    current = await server.hs.store.key_backup.get_version(alice.user_id, None)
    version = str(current.version) if current is not None else "1"
    method, template, body = data.draw(st.sampled_from(_ENDPOINTS), label="endpoint")

    kind = data.draw(st.sampled_from(["body", "body", "body", "raw", "ids"]), label="kind")
    room, session = ROOM, "s1"
    payload: bytes
    if kind == "body":
        where = data.draw(st.sampled_from(paths(body)), label="where")
        payload = dumps_json(replaced(body, where, data.draw(json_values, label="value")))
    elif kind == "raw":
        payload = data.draw(non_json_bodies, label="raw")
    else:
        hostile = st.sampled_from(_HOSTILE_IDS)
        room = data.draw(hostile | st.just(ROOM), label="room")
        session = data.draw(hostile | st.just("s1"), label="session")
        version = data.draw(st.sampled_from(_HOSTILE_VERSIONS) | st.just(version), label="v")
        payload = dumps_json(body)
    path = "/_matrix/client/v3/room_keys" + template.format(
        room=encode_segment(room), session=encode_segment(session), version=encode_segment(version)
    )
    if template.startswith("/keys"):
        path += "?version=" + encode_segment(version)

    before = await snapshot(server.hs.store)
    status, text = await server.call_exact(
        method,
        path,
        data=payload,
        headers={
            "Authorization": f"Bearer {alice.access_token}",
            "Content-Type": "application/json",
        },
    )
    assert status < 500, (method, path, payload[:200], text)
    if status != 200:
        assert status in (400, 403, 404, 413), (status, text)
        assert '"errcode":"M_' in text.replace(" ", ""), text
        assert await snapshot(server.hs.store) == before, (method, path, payload[:200], text)
