"""createRoom refuses oversized invite / invite_3pid / initial_state lists (400 naming the
field) before doing any work, and a missing field is M_MISSING_PARAM, not M_INVALID_PARAM."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.errors import MatrixError
from homeserver.rooms.create_request import (
    MAX_INITIAL_STATE,
    MAX_INVITE_3PID,
    MAX_INVITES,
    parse_create_room_request,
)
from tests.harness import TestServer as Server

THREEPID = {"id_server": "id.example", "id_access_token": "t", "medium": "email", "address": "a@b"}


def _without(key: str) -> dict[str, str]:
    return {k: v for k, v in THREEPID.items() if k != key}


@pytest.mark.parametrize(
    ("body", "errcode", "field"),
    [
        (
            {"invite": [f"@u{i}:x.example" for i in range(MAX_INVITES + 1)]},
            "M_INVALID_PARAM",
            "invite",
        ),
        ({"invite_3pid": [THREEPID] * (MAX_INVITE_3PID + 1)}, "M_INVALID_PARAM", "invite_3pid"),
        (
            {"initial_state": [{"type": "m.x", "content": {}}] * (MAX_INITIAL_STATE + 1)},
            "M_INVALID_PARAM",
            "initial_state",
        ),
        ({"invite_3pid": [_without("id_server")]}, "M_MISSING_PARAM", "invite_3pid[0].id_server"),
        (
            {"invite_3pid": [_without("id_access_token")]},
            "M_MISSING_PARAM",
            "invite_3pid[0].id_access_token",
        ),
        ({"invite_3pid": [_without("medium")]}, "M_MISSING_PARAM", "invite_3pid[0].medium"),
        ({"invite_3pid": [_without("address")]}, "M_MISSING_PARAM", "invite_3pid[0].address"),
        ({"invite_3pid": [{**THREEPID, "id_server": 5}]}, "M_INVALID_PARAM", "id_server"),
        ({"invite_3pid": [{**THREEPID, "medium": ""}]}, "M_INVALID_PARAM", "medium"),
        ({"initial_state": [{"content": {}}]}, "M_MISSING_PARAM", "initial_state[0].type"),
        ({"initial_state": [{"type": "m.x"}]}, "M_MISSING_PARAM", "initial_state[0].content"),
        ({"initial_state": [{"type": 5, "content": {}}]}, "M_INVALID_PARAM", "type"),
        ({"initial_state": [{"type": "m.x", "content": 5}]}, "M_INVALID_PARAM", "content"),
    ],
)
def test_refused(body: dict[str, Any], errcode: str, field: str) -> None:
    with pytest.raises(MatrixError) as caught:
        parse_create_room_request(body)
    assert (caught.value.status, caught.value.errcode) == (400, errcode)
    assert field in caught.value.message


def test_at_the_caps_is_fine() -> None:
    request = parse_create_room_request(
        {
            "invite": [f"@u{i}:x.example" for i in range(MAX_INVITES)],
            "initial_state": [
                {"type": "m.x", "state_key": str(i), "content": {}}
                for i in range(MAX_INITIAL_STATE)
            ],
        }
    )
    assert len(request.invite) == MAX_INVITES
    assert len(request.initial_state) == MAX_INITIAL_STATE


async def test_oversized_lists_over_http(server: Server) -> None:
    alice = await server.register("alice")
    invites = [f"@u{i}:test.example" for i in range(10_000)]
    status, body = await server.call("POST", "/createRoom", alice, json={"invite": invites})
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    assert body["error"].startswith("invite:")
    state = [{"type": "m.x", "state_key": str(i), "content": {}} for i in range(10_000)]
    status, body = await server.call("POST", "/createRoom", alice, json={"initial_state": state})
    assert status == 400 and body["error"].startswith("initial_state:")
    status, body = await server.call(
        "POST", "/createRoom", alice, json={"invite_3pid": [_without("id_server")]}
    )
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    assert await server.hs.store.db.fetchval("SELECT COUNT(*) FROM rooms") == 0
