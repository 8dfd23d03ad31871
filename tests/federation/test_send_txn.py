"""PUT /_matrix/federation/v1/send/{txnId} over HTTP, X-Matrix-signed by a fake remote."""

from __future__ import annotations

from typing import Any

from homeserver.events.ids import compute_event_id
from homeserver.room_versions import get_room_version
from tests.builders import create_public_room
from tests.federation.received_helpers import Remote, signed_request
from tests.harness import TestServer, TestUser
from tests.http_client import q


def _txn(remote: Remote, pdus: list[Any], **extra: Any) -> dict[str, Any]:
    return {"origin": remote.name, "origin_server_ts": 1, "pdus": pdus, **extra}


async def _setup(server: TestServer) -> tuple[TestUser, str, Remote]:
    alice = await server.register("alice")
    room_id = await create_public_room(server, alice)
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


# --- the answer names each PDU by the ID its sender computed -----------------------------------


async def _setup_version(
    server: TestServer, room_version: str, *, join: bool = True
) -> tuple[str, Remote]:
    alice = await server.register("alice")
    room_id = await create_public_room(server, alice, room_version=room_version)
    remote = Remote()
    await remote.seed_key(server.hs)
    if join:
        await remote.join(server.hs, room_id)
    return room_id, remote


def _real_id(room_version: str, pdu: dict[str, Any]) -> str:
    return compute_event_id(get_room_version(room_version), pdu)


async def test_bad_signature_pdu_is_answered_under_its_real_id(server: TestServer) -> None:
    room_id, remote = await _setup_version(server, "11")
    _, pdu = await _message(server, remote, room_id)
    # A top-level key v11's redaction algorithm drops (so its reference hash ignores it) but
    # older versions' keep: only a hash computed with the room's own version matches.
    pdu["origin"] = remote.name
    (kid,) = pdu["signatures"][remote.name]
    pdu["signatures"][remote.name][kid] = "A" * 86
    _, claims = await _message(server, remote, room_id, "claims another ID")
    claims["event_id"] = "$not-its-id"
    claims["signatures"][remote.name][kid] = "A" * 86
    status, body = await signed_request(
        server, remote, "PUT", "/_matrix/federation/v1/send/k1", _txn(remote, [pdu, claims])
    )
    assert status == 200, body
    real, claimed = _real_id("11", pdu), _real_id("11", claims)
    assert set(body["pdus"]) == {real, claimed}
    assert "signature" in body["pdus"][real]["error"]
    assert "signature" in body["pdus"][claimed]["error"]


async def test_pdu_of_another_servers_user_is_answered_under_its_real_id(
    server: TestServer,
) -> None:
    room_id, remote = await _setup_version(server, "11")
    # Built and signed by a server whose keys we cannot get, relayed by ``remote``.
    other = Remote()
    _, pdu = await other.build(
        server.hs,
        room_id,
        type="m.room.message",
        sender=other.user("o"),
        content={"msgtype": "m.text", "body": "relayed"},
    )
    pdu["origin"] = other.name
    status, body = await signed_request(
        server, remote, "PUT", "/_matrix/federation/v1/send/k2", _txn(remote, [pdu])
    )
    assert status == 200, body
    real = _real_id("11", pdu)
    assert list(body["pdus"]) == [real]
    assert "error" in body["pdus"][real]


async def test_v1_pdu_is_answered_under_its_event_id_field(server: TestServer) -> None:
    # (the fake remote builds v3+ PDUs only: this one is written out, and needs no membership)
    room_id, remote = await _setup_version(server, "1", join=False)
    pdu = {
        "event_id": f"$forged:{remote.name}",
        "type": "m.room.message",
        "room_id": room_id,
        "sender": remote.user("r"),
        "content": {"msgtype": "m.text", "body": "unsigned"},
        "depth": 10,
        "origin_server_ts": 1,
        "prev_events": [],
        "auth_events": [],
        "hashes": {"sha256": "A" * 43},
        "signatures": {remote.name: {"ed25519:remote1": "A" * 86}},
    }
    status, body = await signed_request(
        server, remote, "PUT", "/_matrix/federation/v1/send/k3", _txn(remote, [pdu])
    )
    assert status == 200, body
    assert list(body["pdus"]) == [pdu["event_id"]]
