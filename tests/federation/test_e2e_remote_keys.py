"""Asking other servers for end-to-end keys (RemoteKeys: user/keys/query, user/keys/claim,
user/devices) against a fake remote over HTTPS: what is asked, what of the answer is kept,
failures as FederationError; and the federation sender carrying queued E2E EDUs in /send.
Both engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig
from homeserver.federation.client import FederationHttpError, FederationUnreachable
from homeserver.federation.sender import FederationSender
from tests.federation.e2e_fed_helpers import cross_signing_key, device_keys
from tests.federation.fake_remote import LOOPBACK_WHITELIST, FakeRemoteServer, ReceivedRequest
from tests.harness import TestServer, make_config

V1 = "/_matrix/federation/v1"


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return make_config(
        tmp_path,
        federation_verify_certificates=False,
        ip_range_whitelist=LOOPBACK_WHITELIST,
        federation={"client_timeout": "10s"},
    )


def answering(answer: Any) -> Any:
    async def handler(request: ReceivedRequest) -> Any:
        return answer

    return handler


async def test_query_keeps_only_the_asked_users_own_keys(
    server: TestServer, tmp_path: Path
) -> None:
    hs = server.hs
    async with FakeRemoteServer(tmp_path) as remote:
        bob, carol = f"@bob:{remote.server_name}", f"@carol:{remote.server_name}"
        eve = "@eve:elsewhere.example"
        answer = {
            "device_keys": {
                bob: {
                    "B1": device_keys(bob, "B1"),
                    "B2": device_keys(bob, "B1"),  # another device's keys under B2's name
                    "B3": device_keys(carol, "B3"),  # another user's keys
                    "B4": "not an object",
                },
                carol: {"C1": device_keys(carol, "C1")},  # not asked for
                eve: {"E1": device_keys(eve, "E1")},  # not that server's user
            },
            "master_keys": {
                bob: cross_signing_key(bob, "master", "BM"),
                eve: cross_signing_key(eve, "master", "EM"),
            },
            "self_signing_keys": {bob: cross_signing_key(carol, "self_signing", "CS")},
        }
        remote.add_handler("POST", V1 + "/user/keys/query", answering(answer))
        try:
            result = await hs.remote_keys.query(
                remote.server_name, {bob: [], eve: ["E1"]}, timeout_s=10
            )
        finally:
            await hs.federation_client.close()
        (request,) = remote.requests_to(V1 + "/user/keys/query")
    assert request.json == {"device_keys": {bob: []}}  # eve is not that server's to answer
    assert request.x_matrix_origin(hs.signer.signing_key.verify_key, remote.server_name)
    assert result == {
        "device_keys": {bob: {"B1": device_keys(bob, "B1")}},
        "master_keys": {bob: cross_signing_key(bob, "master", "BM")},
        "self_signing_keys": {},
    }


async def test_query_of_named_devices_drops_others(server: TestServer, tmp_path: Path) -> None:
    hs = server.hs
    async with FakeRemoteServer(tmp_path) as remote:
        bob = f"@bob:{remote.server_name}"
        answer = {"device_keys": {bob: {d: device_keys(bob, d) for d in ("B1", "B2")}}}
        remote.add_handler("POST", V1 + "/user/keys/query", answering(answer))
        try:
            result = await hs.remote_keys.query(remote.server_name, {bob: ["B2"]}, timeout_s=10)
        finally:
            await hs.federation_client.close()
    assert list(result["device_keys"][bob]) == ["B2"]


async def test_claim_keeps_one_key_of_the_asked_algorithm(
    server: TestServer, tmp_path: Path
) -> None:
    hs = server.hs
    async with FakeRemoteServer(tmp_path) as remote:
        bob = f"@bob:{remote.server_name}"
        otk = {"key": "k", "signatures": {bob: {"ed25519:B1": "s"}}}
        answer = {
            "one_time_keys": {
                bob: {
                    "B1": {"signed_curve25519:AAAA": otk},
                    "B2": {"curve25519:OLD": "bare"},  # another algorithm than asked
                    "B9": {"signed_curve25519:X": otk},  # not asked for
                },
                "@eve:elsewhere.example": {"E": {"signed_curve25519:E": otk}},
            }
        }
        remote.add_handler("POST", V1 + "/user/keys/claim", answering(answer))
        try:
            claimed = await hs.remote_keys.claim(
                remote.server_name,
                {bob: {"B1": "signed_curve25519", "B2": "signed_curve25519"}},
                timeout_s=10,
            )
        finally:
            await hs.federation_client.close()
        (request,) = remote.requests_to(V1 + "/user/keys/claim")
    assert request.json == {
        "one_time_keys": {bob: {"B1": "signed_curve25519", "B2": "signed_curve25519"}}
    }
    assert claimed == {bob: {"B1": {"signed_curve25519:AAAA": otk}}}


async def test_user_devices_answer_is_checked(server: TestServer, tmp_path: Path) -> None:
    hs = server.hs
    async with FakeRemoteServer(tmp_path) as remote:
        bob = f"@bob:{remote.server_name}"
        answer = {
            "user_id": bob,
            "stream_id": 7,
            "devices": [
                {"device_id": "B1", "keys": device_keys(bob, "B1"), "device_display_name": "x"},
                {"device_id": "B2", "keys": device_keys(bob, "B1")},
                {"no": "id"},
            ],
            "master_key": cross_signing_key(bob, "master", "BM"),
            "self_signing_key": cross_signing_key(bob, "master", "NOT-SELF-SIGNING"),
        }
        remote.add_handler("GET", V1 + "/user/devices/{user_id}", answering(answer))
        try:
            result = await hs.remote_keys.user_devices(bob, timeout_s=10)
            answer["user_id"] = f"@carol:{remote.server_name}"
            with pytest.raises(FederationUnreachable):
                await hs.remote_keys.user_devices(bob, timeout_s=10)
        finally:
            await hs.federation_client.close()
        request = remote.requests_to(V1 + "/user/devices/")[0]
    assert request.params == {"user_id": bob}
    assert result == {
        "stream_id": 7,
        "devices": {
            "B1": {"device_id": "B1", "keys": device_keys(bob, "B1"), "device_display_name": "x"},
            "B2": {"device_id": "B2"},
        },
        "cross_signing": {"master": cross_signing_key(bob, "master", "BM")},
    }


async def test_failures_are_federation_errors(server: TestServer, tmp_path: Path) -> None:
    hs = server.hs
    async with FakeRemoteServer(tmp_path) as remote:
        bob = f"@bob:{remote.server_name}"
        remote.add_handler(
            "POST", V1 + "/user/keys/query", answering((500, {"errcode": "M_UNKNOWN"}))
        )
        remote.add_handler("POST", V1 + "/user/keys/claim", answering(["not", "an", "object"]))
        try:
            with pytest.raises(FederationHttpError):
                await hs.remote_keys.query(remote.server_name, {bob: []}, timeout_s=10)
            with pytest.raises(FederationUnreachable):
                await hs.remote_keys.claim(remote.server_name, {bob: {"D": "a"}}, timeout_s=10)
        finally:
            await hs.federation_client.close()
        gone = remote.server_name
    # The remote has stopped: nothing answers on its port any more.
    try:
        with pytest.raises(FederationUnreachable):
            await hs.remote_keys.query(gone, {f"@bob:{gone}": []}, timeout_s=10)
    finally:
        await hs.federation_client.close()
    # Nothing to ask: no request at all.
    assert await hs.remote_keys.claim(gone, {"@x:elsewhere.example": {"D": "a"}}, 10) == {}


async def test_sender_delivers_queued_e2e_edus(server: TestServer, tmp_path: Path) -> None:
    hs = server.hs
    async with FakeRemoteServer(tmp_path) as remote:
        remote.add_handler("PUT", V1 + "/send/{txn_id}", answering({"pdus": {}}))
        update = {
            "user_id": "@alice:test.example",
            "device_id": "D",
            "stream_id": 3,
            "prev_id": [1],
        }
        to_device = {
            "sender": "@alice:test.example",
            "type": "m.room.encrypted",
            "message_id": "m1",
            "messages": {f"@bob:{remote.server_name}": {"B1": {"ciphertext": "x"}}},
        }
        async with hs.store.db.transaction("test_queue_edus") as txn:
            for edu_type, content in (
                ("m.device_list_update", update),
                ("m.direct_to_device", to_device),
            ):
                await hs.store.outbox.enqueue_txn(
                    txn,
                    remote.server_name,
                    {"kind": "edu", "edu_type": edu_type, "content": content},
                    now=hs.clock(),
                )
        sender = FederationSender(
            hs.store,
            hs.federation_client,
            hs.config.federation,
            hs.clock,
            hs.server_name,
            hs.signer,
            keyring=hs.keyring,
        )
        try:
            assert await sender.send_next(remote.server_name)
        finally:
            await hs.federation_client.close()
        (send,) = remote.requests_to(V1 + "/send/")
    assert send.json["edus"] == [
        {"edu_type": "m.device_list_update", "content": update},
        {"edu_type": "m.direct_to_device", "content": to_device},
    ]
    assert send.json["pdus"] == []
