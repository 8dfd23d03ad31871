"""Knocks over federation, on both engines: our server as the resident (make_knock /
v1/send_knock, asked by a hostile peer with its own key), and our user knocking on a room
hosted by another of our servers over real HTTPS on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.events.event import Event
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, get_room_version
from homeserver.storage import Store
from tests.builders import make_room
from tests.federation.h4_helpers import second_store, two_servers
from tests.federation.received_helpers import Remote, signed_request
from tests.harness import TestServer
from tests.http_client import q

__all__ = ["second_store"]  # the fixture, used by the tests below

VERS = "&".join(f"ver={v}" for v in KNOWN_ROOM_VERSIONS)


def _make_knock(room_id: str, user: str, query: str = VERS) -> str:
    path = f"/_matrix/federation/v1/make_knock/{q(room_id)}/{q(user)}"
    return f"{path}?{query}" if query else path


def _send_knock(room_id: str, event_id: str) -> str:
    return f"/_matrix/federation/v1/send_knock/{q(room_id)}/{q(event_id)}"


def _signed(remote: Remote, answer: dict[str, Any], **changes: Any) -> tuple[str, dict[str, Any]]:
    version = get_room_version(answer["room_version"])
    pdu = {**answer["event"], **changes}
    pdu["origin_server_ts"] += 1
    remote.sign(version, pdu)
    return Event(pdu, version).event_id, pdu


async def _setup(server: TestServer, **room: Any) -> tuple[str, Remote]:
    alice = await server.register("alice")
    room_id = await make_room(server.hs, alice.user_id, **room)
    remote = Remote()
    await remote.seed_key(server.hs)
    return room_id, remote


@pytest.mark.parametrize(("version", "join_rule"), [("7", "knock"), ("10", "knock_restricted")])
async def test_remote_user_knocks_through_us(
    server: TestServer, version: str, join_rule: str
) -> None:
    hs = server.hs
    room_id, remote = await _setup(server, version=version, join_rule=join_rule)
    user = remote.user("bob")
    status, answer = await signed_request(server, remote, "GET", _make_knock(room_id, user))
    assert status == 200, answer
    assert answer["room_version"] == version
    assert answer["event"]["content"] == {"membership": "knock"}
    event_id, pdu = _signed(remote, answer)
    status, body = await signed_request(server, remote, "PUT", _send_knock(room_id, event_id), pdu)
    assert status == 200, body
    types = {e["type"] for e in body["knock_room_state"]}
    assert {"m.room.create", "m.room.join_rules"} <= types
    assert body["knock_state_events"] == body["knock_room_state"]
    stored = await hs.store.state.get_current_state_event(room_id, "m.room.member", user)
    assert stored is not None and stored.event_id == event_id and stored.membership == "knock"


@pytest.mark.parametrize(
    ("room", "query", "expected"),
    [
        ({"join_rule": "knock"}, "", (400, "M_MISSING_PARAM")),
        ({"join_rule": "knock"}, "ver=1&ver=6", (400, "M_INCOMPATIBLE_ROOM_VERSION")),
        ({"join_rule": "public"}, VERS, (403, "M_FORBIDDEN")),
        ({"join_rule": "invite"}, VERS, (403, "M_FORBIDDEN")),
        ({"join_rule": "knock", "version": "6"}, VERS, (403, "M_FORBIDDEN")),
    ],
)
async def test_make_knock_refusals(
    server: TestServer, room: dict[str, Any], query: str, expected: tuple[int, str]
) -> None:
    room_id, remote = await _setup(server, **room)
    status, body = await signed_request(
        server, remote, "GET", _make_knock(room_id, remote.user("bob"), query)
    )
    assert (status, body.get("errcode")) == expected, body


async def test_send_knock_refuses_other_memberships(server: TestServer) -> None:
    hs = server.hs
    room_id, remote = await _setup(server, join_rule="knock")
    user = remote.user("bob")
    status, answer = await signed_request(server, remote, "GET", _make_knock(room_id, user))
    assert status == 200, answer
    content = {"membership": "join"}
    event_id, pdu = _signed(remote, answer, content=content)
    status, body = await signed_request(server, remote, "PUT", _send_knock(room_id, event_id), pdu)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), body
    assert await hs.store.state.get_current_state_event(room_id, "m.room.member", user) is None


async def test_our_user_knocks_on_a_remote_room(
    tmp_path: Path, store: Store, second_store: Store
) -> None:
    async with two_servers(tmp_path, store, second_store) as (a, b):
        alice = await a.user("alice")
        bob = await b.user("bob")
        room_id = await alice.create_room(
            preset="private_chat",
            room_version="10",
            initial_state=[
                {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}
            ],
        )
        public = await alice.create_room(preset="public_chat", room_version="12")
        status, body = await bob.call(
            "POST", f"/knock/{q(room_id)}", {"reason": "hi"}, [("via", a.name)]
        )
        assert (status, body) == (200, {"room_id": room_id})
        knock = await a.hs.store.state.get_current_state_event(
            room_id, "m.room.member", bob.user_id
        )
        assert knock is not None and knock.content == {"membership": "knock", "reason": "hi"}
        row = await b.hs.store.out_of_band.get(bob.user_id, room_id)
        assert row is not None and (row.membership, row.event_id) == ("knock", knock.event_id)

        # Withdrawn with a leave, through the room ID's server.
        status, body = await bob.call("POST", f"/rooms/{q(room_id)}/leave", {})
        assert status == 200, body
        left = await a.hs.store.state.get_current_state_event(
            room_id, "m.room.member", bob.user_id
        )
        assert left is not None and left.membership == "leave" and left.sender == bob.user_id
        row = await b.hs.store.out_of_band.get(bob.user_id, room_id)
        assert row is not None and (row.membership, row.event_id) == ("leave", left.event_id)

        # The resident's refusal reaches the client; without a server (v12 IDs name none), 404.
        status, body = await bob.call("POST", f"/knock/{q(public)}", {}, [("via", a.name)])
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
        status, body = await bob.call("POST", f"/knock/{q(public)}", {})
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND"), body


async def test_send_knock_naming_our_user_is_not_vouched_for(server: TestServer) -> None:
    """Only joins are vouched for: a knock naming one of our users as authoriser does not get
    our signature, so the auth rules refuse it."""
    hs = server.hs
    room_id, remote = await _setup(server, version="10", join_rule="knock_restricted")
    user = remote.user("bob")
    status, answer = await signed_request(server, remote, "GET", _make_knock(room_id, user))
    assert status == 200, answer
    content = {"membership": "knock", "join_authorised_via_users_server": "@alice:test.example"}
    event_id, pdu = _signed(remote, answer, content=content)
    status, body = await signed_request(server, remote, "PUT", _send_knock(room_id, event_id), pdu)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
    assert await hs.store.state.get_current_state_event(room_id, "m.room.member", user) is None
