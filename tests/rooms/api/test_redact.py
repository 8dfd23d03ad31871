"""Redactions on both engines: idempotent per transaction ID, who may redact, the target served
pruned with unsigned.redacted_because, and where ``redacts`` lives per room version."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from homeserver.config import HomeserverConfig
from tests.builders import generous_config, make_room
from tests.harness import TestServer as Server
from tests.harness import TestUser


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def send(server: Server, user: TestUser, room_id: str, txn: str) -> str:
    status, body = await server.call(
        "PUT",
        f"/rooms/{room_id}/send/m.room.message/{txn}",
        user,
        json={"msgtype": "m.text", "body": "secret"},
    )
    assert status == 200, body
    return body["event_id"]


async def redact(
    server: Server, user: TestUser, room_id: str, event_id: str, txn: str, reason: str | None = None
) -> tuple[int, dict]:
    body = {} if reason is None else {"reason": reason}
    return await server.call(
        "PUT", f"/rooms/{room_id}/redact/{quote(event_id, safe='')}/{txn}", user, json=body
    )


@pytest.mark.parametrize(
    ("version", "in_content"), [("3", False), ("10", False), ("11", True), ("12", True)]
)
async def test_redaction_prunes_for_clients(server: Server, version: str, in_content: bool):
    alice = await server.register("alice")
    room_id = await make_room(server.hs, alice.user_id, version=version)
    target = await send(server, alice, room_id, "m")
    status, body = await redact(server, alice, room_id, target, "r1", reason="oops")
    assert status == 200, body
    redaction_id = body["event_id"]
    # Idempotent.
    assert (await redact(server, alice, room_id, target, "r1", reason="oops"))[1] == body
    # Where `redacts` is stored depends on the room version.
    stored = await server.hs.store.events.get_event(redaction_id)
    assert stored is not None
    assert ("redacts" in stored.pdu.get("content", {})) is in_content
    assert ("redacts" in stored.pdu) is not in_content
    # Clients see the target pruned, with the redaction in unsigned.
    status, event = await server.call(
        "GET", f"/rooms/{room_id}/event/{quote(target, safe='')}", alice
    )
    assert status == 200
    assert event["content"] == {}
    because = event["unsigned"]["redacted_because"]
    assert because["event_id"] == redaction_id
    assert because["redacts"] == target and because["content"]["redacts"] == target
    assert because["content"]["reason"] == "oops"
    status, page = await server.call("GET", f"/rooms/{room_id}/messages", alice)
    by_id = {e["event_id"]: e for e in page["chunk"]}
    assert by_id[target]["content"] == {}
    assert by_id[redaction_id]["redacts"] == target
    # The stored PDU itself is untouched (signatures and hashes stay valid).
    original = await server.hs.store.events.get_event(target)
    assert original is not None and original.content["body"] == "secret"
    assert original.internal.redacted


async def test_who_may_redact(server: Server):
    alice, bob, carol = [await server.register(n) for n in ("alice", "bob", "carol")]
    room_id = await make_room(server.hs, alice.user_id)
    for user in (bob, carol):
        await server.call("POST", f"/rooms/{room_id}/join", user, json={})
    bobs = await send(server, bob, room_id, "b")
    alices = await send(server, alice, room_id, "a")
    # Carol (PL 0) may not redact others' events.
    status, body = await redact(server, carol, room_id, bobs, "c1")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # Bob may redact his own; Alice (moderator) anyone's.
    assert (await redact(server, bob, room_id, bobs, "b1"))[0] == 200
    assert (await redact(server, alice, room_id, alices, "a1"))[0] == 200
    carols = await send(server, carol, room_id, "c")
    assert (await redact(server, alice, room_id, carols, "a2"))[0] == 200
    # The create event cannot be redacted.
    create = await server.hs.store.state.get_current_state_event(room_id, "m.room.create", "")
    assert create is not None
    status, body = await redact(server, alice, room_id, create.event_id, "a3")
    assert status == 403
    # An unknown target is accepted and has no effect (as Synapse).
    status, body = await redact(server, alice, room_id, "$unknown", "a4")
    assert status == 200
    # Bad input.
    status, body = await redact(server, alice, room_id, "notanid", "a5")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await server.call(
        "PUT", f"/rooms/{room_id}/redact/{bobs}/a6", alice, json={"reason": 5}
    )
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    status, body = await redact(server, alice, "!unknown:test.example", bobs, "a7")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # A stranger cannot redact.
    eve = await server.register("eve")
    status, body = await redact(server, eve, room_id, bobs, "e1")
    assert status == 403


async def test_redacting_an_event_of_another_room_has_no_effect(server: Server):
    alice = await server.register("alice")
    room_a = await make_room(server.hs, alice.user_id)
    room_b = await make_room(server.hs, alice.user_id)
    target = await send(server, alice, room_a, "m")
    assert (await redact(server, alice, room_b, target, "r"))[0] == 200
    status, event = await server.call("GET", f"/rooms/{room_a}/event/{target}", alice)
    assert status == 200
    assert event["content"]["body"] == "secret"


@pytest.mark.parametrize("version", ["10", "11"])
async def test_redaction_sent_through_send(server: Server, version: str):
    alice = await server.register("alice")
    room_id = await make_room(server.hs, alice.user_id, version=version)
    target = await send(server, alice, room_id, "m")
    status, body = await server.call(
        "PUT",
        f"/rooms/{room_id}/send/m.room.redaction/x1",
        alice,
        json={"redacts": target, "reason": "r"},
    )
    assert status == 200, body
    status, event = await server.call(
        "GET", f"/rooms/{room_id}/event/{quote(target, safe='')}", alice
    )
    assert event["content"] == {}
    assert event["unsigned"]["redacted_because"]["event_id"] == body["event_id"]
    status, body = await server.call(
        "PUT", f"/rooms/{room_id}/send/m.room.redaction/x2", alice, json={"reason": "r"}
    )
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
