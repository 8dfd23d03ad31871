"""PUT /_matrix/federation/v1/send/{txnId} over HTTP, X-Matrix-signed by a fake remote."""

from __future__ import annotations

from typing import Any

from tests.federation.received_helpers import Remote, make_room, q, signed_request
from tests.harness import TestServer, TestUser


def _txn(remote: Remote, pdus: list[Any], **extra: Any) -> dict[str, Any]:
    return {"origin": remote.name, "origin_server_ts": 1, "pdus": pdus, **extra}


async def _setup(server: TestServer) -> tuple[TestUser, str, Remote]:
    alice = await server.register("alice")
    room_id = await make_room(server, alice)
    remote = Remote()
    await remote.seed_key(server.hs)
    await remote.join(server.hs, room_id)
    return alice, room_id, remote


async def _message(server: TestServer, remote: Remote, room_id: str, body: str = "hi") -> Any:
    return await remote.build(
        server.hs,
        room_id,
        type="m.room.message",
        sender=remote.user("r"),
        content={"msgtype": "m.text", "body": body},
    )


async def test_accepted_pdu_answers_empty_entry_and_reaches_sync(server: TestServer) -> None:
    alice, room_id, remote = await _setup(server)
    event_id, pdu = await _message(server, remote, room_id)
    status, body = await signed_request(
        server,
        remote,
        "PUT",
        "/_matrix/federation/v1/send/t1",
        _txn(remote, [pdu], edus=[{"edu_type": "m.typing", "content": {}}]),
    )
    assert status == 200, body
    assert body == {"pdus": {event_id: {}}}
    status, sync = await server.call("GET", "/sync", alice)
    events = sync["rooms"]["join"][room_id]["timeline"]["events"]
    assert event_id in [e["event_id"] for e in events]


async def test_bad_pdus_get_error_entries_and_the_rest_is_accepted(server: TestServer) -> None:
    _alice, room_id, remote = await _setup(server)
    bad_id, bad = await _message(server, remote, room_id, "forged")
    (kid,) = bad["signatures"][remote.name]
    bad["signatures"][remote.name][kid] = "A" * 86
    unknown_room = dict(bad, room_id="!nowhere:" + remote.name)
    # Built on the same extremities as the forged one (which is never stored).
    good_id, good = await _message(server, remote, room_id, "fine")
    status, body = await signed_request(
        server,
        remote,
        "PUT",
        "/_matrix/federation/v1/send/t2",
        _txn(remote, [bad, unknown_room, good]),
    )
    assert status == 200, body
    assert "error" in body["pdus"][bad_id]
    assert body["pdus"][good_id] == {}
    assert len(body["pdus"]) == 3
    unknown_entries = [v for k, v in body["pdus"].items() if k not in (bad_id, good_id)]
    assert "error" in unknown_entries[0]
    assert await server.hs.store.events.get_event(bad_id) is None


async def test_rejected_pdu_still_answers_200(server: TestServer) -> None:
    _alice, room_id, remote = await _setup(server)
    event_id, pdu = await remote.build(
        server.hs,
        room_id,
        type="m.room.message",
        sender=remote.user("stranger"),
        content={"msgtype": "m.text", "body": "not a member"},
    )
    status, body = await signed_request(
        server, remote, "PUT", "/_matrix/federation/v1/send/t3", _txn(remote, [pdu])
    )
    assert status == 200
    assert "error" in body["pdus"][event_id]


async def test_too_many_pdus_or_edus_is_400(server: TestServer) -> None:
    _alice, _room_id, remote = await _setup(server)
    status, body = await signed_request(
        server, remote, "PUT", "/_matrix/federation/v1/send/big", _txn(remote, [{}] * 51)
    )
    assert status == 400, body
    edus = [{"edu_type": "m.typing", "content": {}}] * 101
    status, body = await signed_request(
        server, remote, "PUT", "/_matrix/federation/v1/send/big2", _txn(remote, [], edus=edus)
    )
    assert status == 400, body


async def test_malformed_bodies_are_400(server: TestServer) -> None:
    _alice, _room_id, remote = await _setup(server)
    for i, txn in enumerate(
        [
            {"origin": remote.name, "origin_server_ts": 1},
            {"origin": remote.name, "origin_server_ts": 1, "pdus": {}},
            {"origin": remote.name, "pdus": []},
            {"origin_server_ts": 1, "pdus": []},
            {"origin": remote.name, "origin_server_ts": 1, "pdus": [], "edus": "x"},
        ]
    ):
        status, body = await signed_request(
            server, remote, "PUT", f"/_matrix/federation/v1/send/m{i}", txn
        )
        assert status == 400, (txn, body)


async def test_body_origin_must_be_the_authenticated_server(server: TestServer) -> None:
    _alice, room_id, remote = await _setup(server)
    event_id, pdu = await _message(server, remote, room_id)
    txn = _txn(remote, [pdu])
    txn["origin"] = "someone.else"
    status, body = await signed_request(
        server, remote, "PUT", "/_matrix/federation/v1/send/o1", txn
    )
    assert status == 403, body
    assert await server.hs.store.events.get_event(event_id) is None


async def test_unsigned_request_is_401(server: TestServer) -> None:
    _alice, _room_id, remote = await _setup(server)
    status, _ = await server.call("PUT", "/_matrix/federation/v1/send/u1", json=_txn(remote, []))
    assert status == 401


async def test_repeated_txn_id_answers_the_stored_response(server: TestServer) -> None:
    _alice, room_id, remote = await _setup(server)
    event_id, pdu = await _message(server, remote, room_id)
    path = "/_matrix/federation/v1/send/" + q("txn/1")
    status, first = await signed_request(server, remote, "PUT", path, _txn(remote, [pdu]))
    assert status == 200 and first == {"pdus": {event_id: {}}}
    # A retry — even with a different body — gets the stored answer, nothing processed again.
    other_id, other = await _message(server, remote, room_id, "second")
    status, again = await signed_request(server, remote, "PUT", path, _txn(remote, [other]))
    assert status == 200 and again == first
    assert await server.hs.store.events.get_event(other_id) is None
    # The answer survives a restart of the handler (it is in the database).
    stored = await server.hs.store.federation_inbound.get_transaction_response(remote.name, "txn/1")
    assert stored == first


async def test_server_denied_by_acl_gets_error_entries(server: TestServer) -> None:
    alice, room_id, remote = await _setup(server)
    status, _ = await server.call(
        "PUT",
        f"/rooms/{room_id}/state/m.room.server_acl",
        alice,
        json={"allow": ["*"], "deny": [remote.name.split(":")[0]]},
    )
    assert status == 200
    event_id, pdu = await _message(server, remote, room_id)
    status, body = await signed_request(
        server, remote, "PUT", "/_matrix/federation/v1/send/acl1", _txn(remote, [pdu])
    )
    assert status == 200
    assert "ACL" in body["pdus"][event_id]["error"]
    assert await server.hs.store.events.get_event(event_id) is None
