"""/keys/device_signing/upload (first upload without UIA, replacement with the password, the
same keys again without) and /keys/signatures/upload (own devices by the self-signing key, the
master key by a device, other users' master keys by the user-signing key, and the failures),
through the HTTP API on both engines."""

from __future__ import annotations

import copy
from typing import Any

from signedjson.sign import sign_json

from tests.e2e_keys.helpers import (
    CrossSigning,
    give_password,
    password_auth,
    query,
    upload_device,
)
from tests.harness import TestServer as Server
from tests.harness import TestUser as User


async def upload_cross_signing(server: Server, user: User, body: dict[str, Any]) -> tuple[int, Any]:
    return await server.call("POST", "/keys/device_signing/upload", user, json=body)


async def set_up(server: Server, user: User) -> CrossSigning:
    cs = CrossSigning(user.user_id)
    status, answer = await upload_cross_signing(server, user, cs.upload_body())
    assert (status, answer) == (200, {}), answer
    return cs


async def test_first_upload_needs_no_auth_and_query_shows_the_keys(server: Server) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    before = await server.hs.store.device_lists.get_user_position(alice.user_id)
    cs = await set_up(server, alice)
    assert await server.hs.store.device_lists.get_user_position(alice.user_id) > before

    own = await query(server, alice, alice.user_id)
    assert own["master_keys"] == {alice.user_id: cs.master_key()}
    assert own["self_signing_keys"] == {alice.user_id: cs.self_signing_key()}
    assert own["user_signing_keys"] == {alice.user_id: cs.user_signing_key()}
    # Another user sees the master and self-signing keys, never the user-signing key.
    theirs = await query(server, bob, alice.user_id)
    assert theirs["master_keys"] == {alice.user_id: cs.master_key()}
    assert theirs["self_signing_keys"] == {alice.user_id: cs.self_signing_key()}
    assert theirs["user_signing_keys"] == {}


async def test_replacing_keys_needs_the_password(server: Server) -> None:
    alice = await server.register("alice")
    await give_password(server, alice)
    cs = await set_up(server, alice)
    # The same keys again (a retried request): 200 without auth, nothing changes.
    position = await server.hs.store.device_lists.get_user_position(alice.user_id)
    assert await upload_cross_signing(server, alice, cs.upload_body()) == (200, {})
    assert await server.hs.store.device_lists.get_user_position(alice.user_id) == position

    new = CrossSigning(alice.user_id)
    status, answer = await upload_cross_signing(server, alice, new.upload_body())
    assert status == 401
    assert answer["flows"] == [{"stages": ["m.login.password"]}]
    wrong = {**password_auth(alice, answer["session"]), "password": "wrong"}
    status, _ = await upload_cross_signing(server, alice, {**new.upload_body(), "auth": wrong})
    assert status == 401
    assert (await query(server, alice, alice.user_id))["master_keys"][
        alice.user_id
    ] == cs.master_key()

    body = {**new.upload_body(), "auth": password_auth(alice, answer["session"])}
    assert await upload_cross_signing(server, alice, body) == (200, {})
    assert (await query(server, alice, alice.user_id))["master_keys"][
        alice.user_id
    ] == new.master_key()


async def test_self_signing_key_alone_is_checked_against_the_stored_master(
    server: Server,
) -> None:
    alice = await server.register("alice")
    await give_password(server, alice)
    cs = CrossSigning(alice.user_id)
    status, answer = await upload_cross_signing(
        server, alice, {"self_signing_key": cs.self_signing_key()}
    )
    assert (status, answer["errcode"]) == (400, "M_MISSING_PARAM")
    assert await upload_cross_signing(server, alice, {"master_key": cs.master_key()}) == (200, {})
    other = CrossSigning(alice.user_id)
    body = {"self_signing_key": other.self_signing_key(), "auth": password_auth(alice)}
    status, answer = await upload_cross_signing(server, alice, body)
    assert (status, answer["errcode"]) == (400, "M_INVALID_SIGNATURE")
    body = {"self_signing_key": cs.self_signing_key(), "auth": password_auth(alice)}
    assert await upload_cross_signing(server, alice, body) == (200, {})


async def test_badly_signed_first_upload_refused(server: Server) -> None:
    alice = await server.register("alice")
    cs = CrossSigning(alice.user_id)
    body = cs.upload_body()
    body["user_signing_key"] = CrossSigning(alice.user_id).user_signing_key()
    status, answer = await upload_cross_signing(server, alice, body)
    assert (status, answer["errcode"]) == (400, "M_INVALID_SIGNATURE")
    assert (await query(server, alice, alice.user_id))["master_keys"] == {}


async def upload_signatures(server: Server, user: User, body: Any) -> dict[str, Any]:
    status, answer = await server.call("POST", "/keys/signatures/upload", user, json=body)
    assert status == 200, answer
    result: dict[str, Any] = answer
    return result


async def test_signing_own_device_and_master_key(server: Server) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    device = await upload_device(server, alice)
    cs = await set_up(server, alice)
    device_keys = device.device_keys()
    signed_device = sign_json(copy.deepcopy(device_keys), alice.user_id, cs.self_signing)
    signed_master = device.sign(cs.master_key())
    before = await server.hs.store.device_lists.get_user_position(alice.user_id)
    answer = await upload_signatures(
        server,
        alice,
        {alice.user_id: {alice.device_id: signed_device, cs.master.version: signed_master}},
    )
    assert answer == {"failures": {}}
    assert await server.hs.store.device_lists.get_user_position(alice.user_id) > before

    seen = await query(server, bob, alice.user_id)
    got_device = seen["device_keys"][alice.user_id][alice.device_id]
    assert got_device["signatures"] == signed_device["signatures"]
    assert seen["master_keys"][alice.user_id]["signatures"] == signed_master["signatures"]


async def test_signing_another_users_master_key(server: Server) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    alice_cs = await set_up(server, alice)
    bob_cs = await set_up(server, bob)
    signed = sign_json(bob_cs.master_key(), alice.user_id, alice_cs.user_signing)
    changed_before = await server.hs.store.device_lists.get_user_position(bob.user_id)
    answer = await upload_signatures(server, alice, {bob.user_id: {bob_cs.master.version: signed}})
    assert answer == {"failures": {}}
    # Alice's clients learn of it through a change of Bob.
    assert await server.hs.store.device_lists.get_user_position(bob.user_id) > changed_before

    usk_id = f"ed25519:{alice_cs.user_signing.version}"
    by_alice = (await query(server, alice, bob.user_id))["master_keys"][bob.user_id]
    assert by_alice["signatures"][alice.user_id] == {
        usk_id: signed["signatures"][alice.user_id][usk_id]
    }
    # Alice's verdict on Bob is hers: Carol does not see it.
    by_carol = (await query(server, carol, bob.user_id))["master_keys"][bob.user_id]
    assert alice.user_id not in by_carol.get("signatures", {})


async def test_signature_failures(server: Server) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    device = await upload_device(server, alice)
    alice_cs = await set_up(server, alice)
    bob_cs = await set_up(server, bob)
    good = sign_json(device.device_keys(), alice.user_id, alice_cs.self_signing)
    forged = copy.deepcopy(good)
    ssk_id = f"ed25519:{alice_cs.self_signing.version}"
    forged["signatures"][alice.user_id][ssk_id] = good["signatures"][alice.user_id][
        f"ed25519:{alice.device_id}"
    ]
    changed = sign_json(
        {**device.device_keys(), "algorithms": []}, alice.user_id, alice_cs.self_signing
    )
    unknown = sign_json(
        {**device.device_keys(), "device_id": "NOSUCH"}, alice.user_id, alice_cs.self_signing
    )
    not_master = sign_json(bob_cs.self_signing_key(), alice.user_id, alice_cs.user_signing)
    answer = await upload_signatures(
        server,
        alice,
        {
            alice.user_id: {"NOSUCH": unknown, alice.device_id: forged},
            bob.user_id: {bob_cs.self_signing.version: not_master},
        },
    )
    failures = answer["failures"]
    assert failures[alice.user_id]["NOSUCH"]["status"] == 404
    assert failures[alice.user_id][alice.device_id]["errcode"] == "M_INVALID_SIGNATURE"
    assert failures[bob.user_id][bob_cs.self_signing.version]["status"] == 404
    answer = await upload_signatures(server, alice, {alice.user_id: {alice.device_id: changed}})
    assert answer["failures"][alice.user_id][alice.device_id]["status"] == 400
    # None of them was stored.
    seen = await query(server, bob, alice.user_id)
    assert (
        ssk_id
        not in seen["device_keys"][alice.user_id][alice.device_id]["signatures"][alice.user_id]
    )


async def test_signatures_without_cross_signing_keys_fail(server: Server) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    device = await upload_device(server, alice)
    bob_cs = await set_up(server, bob)
    answer = await upload_signatures(
        server,
        alice,
        {
            alice.user_id: {alice.device_id: device.device_keys()},
            bob.user_id: {bob_cs.master.version: bob_cs.master_key()},
        },
    )
    assert answer["failures"][alice.user_id][alice.device_id]["status"] == 404
    assert answer["failures"][bob.user_id][bob_cs.master.version]["status"] == 404


async def test_served_under_unstable_as_matrix_js_sdk_calls_them(server: Server) -> None:
    # matrix-js-sdk 34 (Cinny) uploads cross-signing keys and asks for key changes only under
    # /_matrix/client/unstable; Synapse serves the whole /keys API there too.
    alice = await server.register("alice")
    cs = CrossSigning(alice.user_id)
    status, answer = await server.call(
        "POST", "/_matrix/client/unstable/keys/device_signing/upload", alice, json=cs.upload_body()
    )
    assert (status, answer) == (200, {})
    assert (await query(server, alice, alice.user_id))["master_keys"] == {
        alice.user_id: cs.master_key()
    }
    status, answer = await server.call(
        "GET", "/_matrix/client/unstable/keys/changes", alice, params={"from": "s0_0_0"}
    )
    assert status == 200 and alice.user_id in answer["changed"], answer
