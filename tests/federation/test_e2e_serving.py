"""Serving our users' end-to-end keys over federation: POST user/keys/query, POST
user/keys/claim and GET user/devices/{userId}, with X-Matrix-signed requests; both engines."""

from __future__ import annotations

from homeserver.storage.e2e_keys import Signature
from tests.federation.cs_client import q
from tests.federation.e2e_fed_helpers import add_signatures, seed_keys
from tests.federation.received_helpers import Remote, signed_request
from tests.harness import TestServer, TestUser

V1 = "/_matrix/federation/v1"


async def alice_with_keys(server: TestServer) -> tuple[TestUser, Remote]:
    """alice: her registered device (named "Alice's phone") with keys, one-time keys, a
    fallback key and cross-signing keys; a second device "BARE" without keys."""
    alice = await server.register("alice")
    hs = server.hs
    await hs.store.users.upsert_device(alice.user_id, alice.device_id, "Alice's phone")
    await hs.store.users.upsert_device(alice.user_id, "BARE", "Alice's laptop")
    await seed_keys(hs, alice.user_id, alice.device_id, one_time_key_ids=("AAAA", "AAAB"))
    await add_signatures(
        hs,
        # her self-signing key signs her device; her device signs her master key
        Signature(alice.user_id, "ed25519:SELF", alice.user_id, alice.device_id, "ssk-sig"),
        Signature(alice.user_id, f"ed25519:{alice.device_id}", alice.user_id, "MASTER", "dev-sig"),
        # bob's user-signing key signs her master key: only bob may see that
        Signature("@bob:test.example", "ed25519:BOBUSK", alice.user_id, "MASTER", "bob-sig"),
    )
    remote = Remote()
    await remote.seed_key(hs)
    return alice, remote


async def test_keys_query_answers_our_users_keys(server: TestServer) -> None:
    alice, remote = await alice_with_keys(server)
    dev = alice.device_id
    ghost = "@ghost:test.example"
    status, body = await signed_request(
        server,
        remote,
        "POST",
        f"{V1}/user/keys/query",
        {"device_keys": {alice.user_id: [], ghost: []}},
    )
    assert status == 200, body
    assert set(body) == {"device_keys", "master_keys", "self_signing_keys"}
    assert body["device_keys"][ghost] == {}
    (keys,) = body["device_keys"][alice.user_id].values()
    assert keys["device_id"] == dev and keys["keys"][f"ed25519:{dev}"] == f"ed-{dev}"
    assert keys["signatures"] == {
        alice.user_id: {f"ed25519:{dev}": f"self-sig-{dev}", "ed25519:SELF": "ssk-sig"}
    }
    assert "unsigned" not in keys  # no device names over federation
    master = body["master_keys"][alice.user_id]
    assert master["keys"] == {"ed25519:MASTER": "MASTER"}
    assert master["signatures"] == {alice.user_id: {f"ed25519:{dev}": "dev-sig"}}
    assert body["self_signing_keys"][alice.user_id]["usage"] == ["self_signing"]
    assert "user_signing_keys" not in body

    # Named devices only; a device without keys is simply absent.
    query = {"device_keys": {alice.user_id: ["BARE", dev, "NOPE"]}}
    status, body = await signed_request(server, remote, "POST", f"{V1}/user/keys/query", query)
    assert status == 200 and list(body["device_keys"][alice.user_id]) == [dev]


async def test_keys_query_refuses_bad_input(server: TestServer) -> None:
    alice, remote = await alice_with_keys(server)
    path = f"{V1}/user/keys/query"
    for body, errcode in [
        ({"device_keys": {alice.user_id: [], "@x:elsewhere.example": []}}, "M_INVALID_PARAM"),
        ({"device_keys": {"not-a-user": []}}, "M_INVALID_PARAM"),
        ({"device_keys": {alice.user_id: "DEV"}}, "M_BAD_JSON"),
        ({"device_keys": {alice.user_id: [1]}}, "M_BAD_JSON"),
        ({"device_keys": []}, "M_BAD_JSON"),
        ({}, "M_BAD_JSON"),
    ]:
        status, answer = await signed_request(server, remote, "POST", path, body)
        assert (status, answer["errcode"]) == (400, errcode), body
    status, _ = await server.call("POST", path, json={"device_keys": {alice.user_id: []}})
    assert status == 401  # unsigned


async def test_keys_claim_hands_out_each_one_time_key_once_then_the_fallback(
    server: TestServer,
) -> None:
    alice, remote = await alice_with_keys(server)
    dev = alice.device_id
    path = f"{V1}/user/keys/claim"
    claim = {
        "one_time_keys": {alice.user_id: {dev: "signed_curve25519", "BARE": "signed_curve25519"}}
    }
    claimed = []
    for _ in range(4):
        status, body = await signed_request(server, remote, "POST", path, claim)
        assert status == 200, body
        assert list(body["one_time_keys"]) == [alice.user_id]
        assert list(body["one_time_keys"][alice.user_id]) == [dev]  # BARE has no keys
        claimed.append(body["one_time_keys"][alice.user_id][dev])
    assert claimed[0] == {"signed_curve25519:AAAA": {"key": "otk-AAAA", "signatures": {}}}
    assert list(claimed[1]) == ["signed_curve25519:AAAB"]
    assert list(claimed[2]) == list(claimed[3]) == ["signed_curve25519:FALLBACK"]
    assert await server.hs.store.e2e_keys.get_unused_fallback_key_types(alice.user_id, dev) == []
    status, body = await signed_request(
        server, remote, "POST", path, {"one_time_keys": {alice.user_id: {dev: "curve25519"}}}
    )
    assert (status, body) == (200, {"one_time_keys": {}})
    for bad, errcode in [
        (
            {"one_time_keys": {"@x:elsewhere.example": {"D": "signed_curve25519"}}},
            "M_INVALID_PARAM",
        ),
        ({"one_time_keys": {alice.user_id: ["signed_curve25519"]}}, "M_BAD_JSON"),
        ({"one_time_keys": {alice.user_id: {dev: 5}}}, "M_BAD_JSON"),
        ({}, "M_BAD_JSON"),
    ]:
        status, body = await signed_request(server, remote, "POST", path, bad)
        assert (status, body["errcode"]) == (400, errcode), bad


async def test_user_devices_lists_every_device_with_the_stream_position(
    server: TestServer,
) -> None:
    alice, remote = await alice_with_keys(server)
    hs = server.hs
    async with hs.store.db.transaction("test_change") as txn:
        await hs.store.device_lists.add_change_txn(txn, alice.user_id, [alice.device_id])
        position = await hs.store.device_lists.add_change_txn(txn, alice.user_id, ["BARE"])
    status, body = await signed_request(
        server, remote, "GET", f"{V1}/user/devices/{q(alice.user_id)}"
    )
    assert status == 200, body
    assert body["user_id"] == alice.user_id and body["stream_id"] == position > 0
    by_device = {d["device_id"]: d for d in body["devices"]}
    assert set(by_device) == {alice.device_id, "BARE"}
    assert by_device["BARE"] == {"device_id": "BARE"}  # no keys, no display name
    keys = by_device[alice.device_id]["keys"]
    assert keys["signatures"][alice.user_id]["ed25519:SELF"] == "ssk-sig"
    assert "device_display_name" not in by_device[alice.device_id]
    assert body["master_key"]["keys"] == {"ed25519:MASTER": "MASTER"}
    assert body["self_signing_key"]["keys"] == {"ed25519:SELF": "SELF"}

    bob = await server.register("bob")  # no keys at all
    status, body = await signed_request(
        server, remote, "GET", f"{V1}/user/devices/{q(bob.user_id)}"
    )
    assert status == 200
    assert body == {
        "user_id": bob.user_id,
        "stream_id": 0,
        "devices": [{"device_id": bob.device_id}],
    }
    for user_id in ("@x:elsewhere.example", "nobody"):
        status, body = await signed_request(
            server, remote, "GET", f"{V1}/user/devices/{q(user_id)}"
        )
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), user_id
