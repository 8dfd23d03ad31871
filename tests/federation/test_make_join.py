"""Our server as the room's resident server: make_join / v2/send_join / make_leave /
v2/send_leave, on both engines.

A fake remote (tests.federation.received_helpers.Remote: its key seeded in our store) asks our
in-process server through X-Matrix-signed requests, builds its join from our template and signs
it, as Synapse does.
"""

from __future__ import annotations

from typing import Any

from homeserver.events.event import Event
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, get_room_version
from tests.builders import create_public_room
from tests.federation.received_helpers import Remote, signed_request
from tests.harness import TestServer
from tests.http_client import q

VERS = "&".join(f"ver={v}" for v in KNOWN_ROOM_VERSIONS)


def _make_join_path(room_id: str, user_id: str, query: str = VERS) -> str:
    path = f"/_matrix/federation/v1/make_join/{q(room_id)}/{q(user_id)}"
    return f"{path}?{query}" if query else path


async def _setup(server: TestServer, **room: Any) -> tuple[str, Remote]:
    alice = await server.register("alice")
    room_id = await create_public_room(server, alice, **room)
    remote = Remote()
    await remote.seed_key(server.hs)
    return room_id, remote


def _sign_template(remote: Remote, answer: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """What a joining server does with a template: its timestamp, hash and signature."""
    version = get_room_version(answer["room_version"])
    pdu = dict(answer["event"])
    pdu["origin_server_ts"] += 1
    remote.sign(version, pdu)
    return Event(pdu, version).event_id, pdu


async def _join(server: TestServer, remote: Remote, room_id: str, user: str) -> dict[str, Any]:
    status, answer = await signed_request(server, remote, "GET", _make_join_path(room_id, user))
    assert status == 200, answer
    event_id, pdu = _sign_template(remote, answer)
    path = f"/_matrix/federation/v2/send_join/{q(room_id)}/{q(event_id)}?omit_members=true"
    status, body = await signed_request(server, remote, "PUT", path, pdu)
    assert status == 200, body
    return body


async def test_make_join_template_is_our_current_state(server: TestServer) -> None:
    room_id, remote = await _setup(server)
    user = remote.user("bob")
    status, answer = await signed_request(server, remote, "GET", _make_join_path(room_id, user))
    assert status == 200, answer
    room = await server.hs.store.rooms.get_room(room_id)
    assert room is not None
    assert answer["room_version"] == room.room_version
    template = answer["event"]
    assert template["type"] == "m.room.member"
    assert template["sender"] == template["state_key"] == user
    assert template["content"] == {"membership": "join"}
    assert template["room_id"] == room_id
    assert not {"signatures", "hashes", "unsigned"} & template.keys()
    extremities = await server.hs.store.events.get_forward_extremities(room_id)
    assert template["prev_events"] == extremities.event_ids
    state = await server.hs.store.state.get_current_state_ids(room_id)
    assert set(template["auth_events"]) <= set(state.values())


async def test_send_join_answers_state_before_join_and_persists(server: TestServer) -> None:
    hs = server.hs
    room_id, remote = await _setup(server)
    before = await hs.store.state.get_current_state_ids(room_id)
    user = remote.user("bob")
    body = await _join(server, remote, room_id, user)
    version = get_room_version((await hs.store.rooms.get_room(room_id)).room_version)  # type: ignore[union-attr]
    state_ids = {Event(p, version).event_id for p in body["state"]}
    assert state_ids == set(before.values())  # the state BEFORE the join
    chain_ids = {Event(p, version).event_id for p in body["auth_chain"]}
    assert before[("m.room.create", "")] in chain_ids | state_ids
    assert body["members_omitted"] is False
    assert remote.name in body["servers_in_room"] and hs.server_name in body["servers_in_room"]
    join_id = Event(body["event"], version).event_id
    assert await hs.store.state.get_current_state_event_id(room_id, "m.room.member", user) == (
        join_id
    )
    assert user in await hs.store.state.get_current_members(room_id, "join")


async def test_send_join_is_queued_for_other_servers_not_the_origin(server: TestServer) -> None:
    hs = server.hs
    room_id, first = await _setup(server)
    await _join(server, first, room_id, first.user("one"))
    second = Remote()
    await second.seed_key(hs)
    before = {e.id for e in await hs.store.outbox.get_due(2**62, 1000)}
    await _join(server, second, room_id, second.user("two"))
    new = [e for e in await hs.store.outbox.get_due(2**62, 1000) if e.id not in before]
    assert [e.destination for e in new] == [first.name]


async def test_make_join_errors(server: TestServer) -> None:
    hs = server.hs
    room_id, remote = await _setup(server)
    user = remote.user("bob")
    room = await hs.store.rooms.get_room(room_id)
    assert room is not None
    # Unknown room.
    status, body = await signed_request(
        server, remote, "GET", _make_join_path("!nope:test.example", user)
    )
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    # A user of another server than the requester.
    status, body = await signed_request(
        server, remote, "GET", _make_join_path(room_id, "@eve:other.example")
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # No version in common.
    status, body = await signed_request(
        server, remote, "GET", _make_join_path(room_id, user, "ver=1&ver=2")
    )
    assert (status, body["errcode"]) == (400, "M_INCOMPATIBLE_ROOM_VERSION")
    assert body["room_version"] == room.room_version
    # Without ver, only version 1 is assumed.
    status, body = await signed_request(server, remote, "GET", _make_join_path(room_id, user, ""))
    assert (status, body["errcode"]) == (400, "M_INCOMPATIBLE_ROOM_VERSION")
    # Unsigned.
    status, _ = await server.call("GET", _make_join_path(room_id, user))
    assert status == 401


async def test_make_join_refused_by_auth_rules(server: TestServer) -> None:
    room_id, remote = await _setup(server, preset="private_chat")
    status, body = await signed_request(
        server, remote, "GET", _make_join_path(room_id, remote.user("bob"))
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


async def test_acl_refuses_make_join_and_send_join(server: TestServer) -> None:
    hs = server.hs
    room_id, remote = await _setup(server)
    user = remote.user("bob")
    status, answer = await signed_request(server, remote, "GET", _make_join_path(room_id, user))
    assert status == 200
    event_id, pdu = _sign_template(remote, answer)
    alice = "@alice:test.example"
    acl = {"allow": ["test.example"], "deny": []}
    await hs.room_events.send_state(alice, room_id, "m.room.server_acl", "", acl)
    status, body = await signed_request(server, remote, "GET", _make_join_path(room_id, user))
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    path = f"/_matrix/federation/v2/send_join/{q(room_id)}/{q(event_id)}"
    status, body = await signed_request(server, remote, "PUT", path, pdu)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert user not in await hs.store.state.get_current_members(room_id, "join")


async def test_send_join_refuses_bad_events(server: TestServer) -> None:
    hs = server.hs
    room_id, remote = await _setup(server)
    user = remote.user("bob")
    status, answer = await signed_request(server, remote, "GET", _make_join_path(room_id, user))
    assert status == 200
    version = get_room_version(answer["room_version"])
    event_id, pdu = _sign_template(remote, answer)
    path = f"/_matrix/federation/v2/send_join/{q(room_id)}/{q(event_id)}"

    def variant(**changes: Any) -> tuple[str, dict[str, Any]]:
        other = {**answer["event"], **changes}
        remote.sign(version, other)
        new_id = Event(other, version).event_id
        return f"/_matrix/federation/v2/send_join/{q(room_id)}/{q(new_id)}", other

    # Not a join.
    bad_path, bad = variant(content={"membership": "leave"})
    status, body = await signed_request(server, remote, "PUT", bad_path, bad)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    # state_key is not the sender.
    bad_path, bad = variant(state_key=remote.user("mallory"))
    status, body = await signed_request(server, remote, "PUT", bad_path, bad)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    # A bad signature.
    forged = dict(pdu)
    forged["signatures"] = {remote.name: {"ed25519:remote1": "A" * 86}}
    status, body = await signed_request(server, remote, "PUT", path, forged)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    # The path's event ID is not the event's.
    wrong = f"/_matrix/federation/v2/send_join/{q(room_id)}/{q('$wrong')}"
    status, body = await signed_request(server, remote, "PUT", wrong, pdu)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    # Not JSON object.
    status, body = await signed_request(server, remote, "PUT", path, ["x"])
    assert status == 400
    assert user not in await hs.store.state.get_current_members(room_id, "join")
    # The good one still works, and a retry answers the same.
    status, first = await signed_request(server, remote, "PUT", path, pdu)
    assert status == 200, first
    status, again = await signed_request(server, remote, "PUT", path, pdu)
    assert status == 200 and again["state"] == first["state"]


async def test_make_leave_and_send_leave(server: TestServer) -> None:
    hs = server.hs
    room_id, remote = await _setup(server)
    user = remote.user("bob")
    await _join(server, remote, room_id, user)
    path = f"/_matrix/federation/v1/make_leave/{q(room_id)}/{q(user)}"
    status, answer = await signed_request(server, remote, "GET", path)
    assert status == 200, answer
    assert answer["event"]["content"] == {"membership": "leave"}
    event_id, pdu = _sign_template(remote, answer)
    # A leave posted to send_join, and a join posted to send_leave, are refused.
    status, body = await signed_request(
        server, remote, "PUT", f"/_matrix/federation/v2/send_join/{q(room_id)}/{q(event_id)}", pdu
    )
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    send_leave = f"/_matrix/federation/v2/send_leave/{q(room_id)}/{q(event_id)}"
    status, body = await signed_request(server, remote, "PUT", send_leave, pdu)
    assert (status, body) == (200, {})
    member = await hs.store.state.get_current_state_event(room_id, "m.room.member", user)
    assert member is not None and member.membership == "leave"
