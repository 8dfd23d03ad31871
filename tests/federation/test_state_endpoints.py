"""Serving events and state to other servers: /state, /state_ids, /event, /event_auth,
/backfill, /get_missing_events — X-Matrix-signed requests from a fake remote with a member in
the room, and refusals for servers without one, denied by the ACL, or asking about unknowns."""

from __future__ import annotations

from typing import Any

from homeserver.events.event import Event
from tests.builders import create_public_room
from tests.federation.received_helpers import Remote, signed_request
from tests.harness import TestServer, TestUser
from tests.http_client import q

V1 = "/_matrix/federation/v1"


async def _setup(server: TestServer) -> tuple[TestUser, str, Remote, list[str]]:
    """A room with alice, the remote's user and three messages; returns their IDs in order."""
    alice = await server.register("alice")
    room_id = await create_public_room(server, alice)
    remote = Remote()
    await remote.seed_key(server.hs)
    await remote.join(server.hs, room_id)
    ids = []
    for n in range(3):
        status, body = await server.call(
            "PUT",
            f"/rooms/{room_id}/send/m.room.message/m{n}",
            alice,
            json={"msgtype": "m.text", "body": f"message {n}"},
        )
        assert status == 200, body
        ids.append(body["event_id"])
    return alice, room_id, remote, ids


def _ids(pdus: list[dict[str, Any]], server: TestServer, room_version: Any) -> list[str]:
    return [Event(p, room_version).event_id for p in pdus]


async def test_state_ids_and_state_are_the_state_before_the_event(server: TestServer) -> None:
    hs = server.hs
    _alice, room_id, remote, ids = await _setup(server)
    room_version = await hs.received_events.room_version_of(room_id)
    expected = await hs.store.state.get_state_ids_at_event(ids[0], before=True)
    assert expected is not None
    status, body = await signed_request(
        server, remote, "GET", f"{V1}/state_ids/{q(room_id)}?event_id={q(ids[0])}"
    )
    assert status == 200, body
    assert sorted(body["pdu_ids"]) == sorted(expected.values())
    chain = await hs.store.events.get_auth_chain_ids(room_id, expected.values())
    assert sorted(body["auth_chain_ids"]) == sorted(chain)
    status, body = await signed_request(
        server, remote, "GET", f"{V1}/state/{q(room_id)}?event_id={q(ids[0])}"
    )
    assert status == 200, body
    assert sorted(_ids(body["pdus"], server, room_version)) == sorted(expected.values())
    assert sorted(_ids(body["auth_chain"], server, room_version)) == sorted(chain)
    # A state event's own entry is not in the state before it.
    member_id = expected[("m.room.member", remote.user("r"))]
    status, body = await signed_request(
        server, remote, "GET", f"{V1}/state_ids/{q(room_id)}?event_id={q(member_id)}"
    )
    assert status == 200 and member_id not in body["pdu_ids"]


async def test_event_and_event_auth(server: TestServer) -> None:
    hs = server.hs
    _alice, room_id, remote, ids = await _setup(server)
    room_version = await hs.received_events.room_version_of(room_id)
    status, body = await signed_request(server, remote, "GET", f"{V1}/event/{q(ids[1])}")
    assert status == 200, body
    assert body["origin"] == hs.server_name and isinstance(body["origin_server_ts"], int)
    assert _ids(body["pdus"], server, room_version) == [ids[1]]
    status, body = await signed_request(
        server, remote, "GET", f"{V1}/event_auth/{q(room_id)}/{q(ids[1])}"
    )
    assert status == 200, body
    expected = await hs.store.events.get_auth_chain_ids(room_id, [ids[1]])
    assert sorted(_ids(body["auth_chain"], server, room_version)) == sorted(expected)


async def test_backfill_walks_back_from_the_given_events(server: TestServer) -> None:
    hs = server.hs
    _alice, room_id, remote, ids = await _setup(server)
    room_version = await hs.received_events.room_version_of(room_id)
    status, body = await signed_request(
        server, remote, "GET", f"{V1}/backfill/{q(room_id)}?v={q(ids[2])}&limit=3"
    )
    assert status == 200, body
    assert _ids(body["pdus"], server, room_version) == [ids[2], ids[1], ids[0]]
    status, body = await signed_request(
        server, remote, "GET", f"{V1}/backfill/{q(room_id)}?v={q(ids[2])}"
    )
    assert status == 400


async def test_get_missing_events_between_earliest_and_latest(server: TestServer) -> None:
    hs = server.hs
    _alice, room_id, remote, ids = await _setup(server)
    room_version = await hs.received_events.room_version_of(room_id)
    status, body = await signed_request(
        server,
        remote,
        "POST",
        f"{V1}/get_missing_events/{q(room_id)}",
        {"earliest_events": [ids[0]], "latest_events": [ids[2]], "limit": 10},
    )
    assert status == 200, body
    assert _ids(body["events"], server, room_version) == [ids[1]]
    status, body = await signed_request(
        server,
        remote,
        "POST",
        f"{V1}/get_missing_events/{q(room_id)}",
        {"earliest_events": [], "latest_events": [ids[2]], "limit": 2},
    )
    assert status == 200
    assert _ids(body["events"], server, room_version) == [ids[0], ids[1]]
    status, body = await signed_request(
        server, remote, "POST", f"{V1}/get_missing_events/{q(room_id)}", {"latest_events": []}
    )
    assert status == 400


async def test_refusals(server: TestServer) -> None:
    alice, room_id, remote, ids = await _setup(server)
    paths = [
        ("GET", f"{V1}/state_ids/{q(room_id)}?event_id={q(ids[0])}", None),
        ("GET", f"{V1}/state/{q(room_id)}?event_id={q(ids[0])}", None),
        ("GET", f"{V1}/event/{q(ids[0])}", None),
        ("GET", f"{V1}/event_auth/{q(room_id)}/{q(ids[0])}", None),
        ("GET", f"{V1}/backfill/{q(room_id)}?v={q(ids[0])}&limit=5", None),
        (
            "POST",
            f"{V1}/get_missing_events/{q(room_id)}",
            {"earliest_events": [], "latest_events": [ids[0]]},
        ),
    ]
    # A server with no member in the room.
    outsider = Remote()
    await outsider.seed_key(server.hs)
    for method, path, body in paths:
        status, answer = await signed_request(server, outsider, method, path, body)
        assert status == 403, (path, answer)
        assert answer["errcode"] == "M_FORBIDDEN"
    # Unknown room and unknown event.
    status, _ = await signed_request(
        server, remote, "GET", f"{V1}/state_ids/{q('!nope:test.example')}?event_id={q(ids[0])}"
    )
    assert status == 404
    status, _ = await signed_request(
        server, remote, "GET", f"{V1}/state_ids/{q(room_id)}?event_id={q('$unknown')}"
    )
    assert status == 404
    status, _ = await signed_request(server, remote, "GET", f"{V1}/event/{q('$unknown')}")
    assert status == 404
    status, _ = await signed_request(server, remote, "GET", f"{V1}/state_ids/{q(room_id)}")
    assert status == 400
    # The member's server once the ACL denies it.
    status, _ = await server.call(
        "PUT",
        f"/rooms/{room_id}/state/m.room.server_acl",
        alice,
        json={"allow": ["*"], "deny": ["localhost"]},
    )
    assert status == 200
    for method, path, body in paths:
        status, answer = await signed_request(server, remote, method, path, body)
        assert status == 403, (path, answer)
