"""The bugs the hostile-body fuzz (test_endpoint_bodies.py) found, each pinned by a plain test.

1. A body nested a few hundred levels deep parsed, then blew Python's recursion limit in the
   handlers (``copy.deepcopy`` of ``creation_content``): a 500. Request JSON is now refused past
   ``MAX_REQUEST_DEPTH`` levels (400 ``M_BAD_JSON``), client and federation alike.
2. ``content.membership`` that is a list or an object made the auth-event selection raise
   ``TypeError: unhashable`` (a state PUT of ``m.room.member``): a 500.
3. A UIA ``auth.session`` holding NUL reached a PostgreSQL look-up, which refuses NUL: a 500.
4. A path escape that is not UTF-8 (``%ED%A0%80``, a lone surrogate) was left undecoded by
   aiohttp, so an event was stored with the literal type ``:%ED%A0%80``. Refused with 400 now.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from homeserver.auth.selection import auth_types_for_event
from homeserver.config import HomeserverConfig
from homeserver.crypto.canonical_json import MAX_REQUEST_DEPTH, JSONTooDeep, parse_json
from homeserver.room_versions import get_room_version
from tests.federation.received_helpers import Remote, signed_request
from tests.harness import TestServer, make_config


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return make_config(
        tmp_path, enable_registration=True, enable_registration_without_verification=True
    )


def _nested(depth: int) -> str:
    return '{"a":' * (depth - 1) + "[]" + "}" * (depth - 1)


@pytest.mark.parametrize(
    ("depth", "refused"), [(1, False), (MAX_REQUEST_DEPTH, False), (MAX_REQUEST_DEPTH + 1, True)]
)
def test_request_depth_limit(depth: int, refused: bool) -> None:
    text = _nested(depth)
    parse_json(text)  # no limit unless asked (stored JSON is read back as it was accepted)
    if refused:
        with pytest.raises(JSONTooDeep):
            parse_json(text, max_depth=MAX_REQUEST_DEPTH)
    else:
        parse_json(text, max_depth=MAX_REQUEST_DEPTH)


async def test_deep_create_room_body_is_400(server: TestServer) -> None:
    alice = await server.register("alice")
    for depth in (300, 900):
        body = '{"creation_content": {"x": ' + _nested(depth) + "}}"
        status, answer = await server.call("POST", "/createRoom", alice, data=body)
        assert status == 400, answer
        assert answer["errcode"] == "M_BAD_JSON"
    assert await server.hs.store.db.fetchval("SELECT COUNT(*) FROM rooms") == 0


async def test_deep_federation_transaction_is_400(server: TestServer) -> None:
    remote = Remote()
    await remote.seed_key(server.hs)
    txn = {"origin": remote.name, "origin_server_ts": 1, "pdus": [], "edus": []}
    deep: object = []
    for _ in range(MAX_REQUEST_DEPTH + 5):
        deep = [deep]
    txn["edus"] = [{"edu_type": "m.typing", "content": {"x": deep}}]
    status, answer = await signed_request(
        server, remote, "PUT", "/_matrix/federation/v1/send/deep1", txn
    )
    assert status == 400, answer
    assert answer["errcode"] == "M_BAD_JSON"


@pytest.mark.parametrize("membership", [[], ["join"], {}, {"a": 1}])
def test_auth_selection_with_a_non_string_membership(membership: object) -> None:
    keys = auth_types_for_event(
        get_room_version("10"),
        "m.room.member",
        "@a:x",
        "@a:x",
        {"membership": membership},
    )
    assert ("m.room.join_rules", "") not in keys
    assert ("m.room.member", "@a:x") in keys


async def test_state_put_with_a_list_membership_is_400(server: TestServer) -> None:
    alice = await server.register("alice")
    status, answer = await server.call("POST", "/createRoom", alice, json={"preset": "public_chat"})
    room_id = answer["room_id"]
    status, answer = await server.call(
        "PUT",
        f"/rooms/{room_id}/state/m.room.member/{alice.user_id}",
        alice,
        json={"membership": ["join"]},
    )
    assert 400 <= status < 500, answer
    assert answer["errcode"].startswith("M_")


async def test_nul_uia_session_is_400(server: TestServer) -> None:
    status, answer = await server.call(
        "POST",
        "/register",
        json={
            "username": "nul",
            "password": "a long enough password",
            "auth": {"type": "m.login.dummy", "session": "a\x00b"},
        },
    )
    assert status == 400, answer
    assert answer["errcode"] == "M_UNKNOWN"


@pytest.mark.parametrize(
    ("event_type", "status"),
    [("%3A%ED%A0%80", 400), ("%FF", 400), ("m.%E2%9C%93", 200), ("a%25ED%25A0", 200)],
)
async def test_path_escapes_must_be_utf8(server: TestServer, event_type: str, status: int) -> None:
    alice = await server.register("alice")
    code, body = await server.call("POST", "/createRoom", alice, json={})
    assert code == 200, body
    room = body["room_id"].replace("!", "%21").replace(":", "%3A")
    code, body = await server.call(
        "PUT", f"/rooms/{room}/send/{event_type}/t1", alice, json={"body": "x"}
    )
    assert code == status, body
    if status == 400:
        assert body["errcode"] == "M_INVALID_PARAM"
