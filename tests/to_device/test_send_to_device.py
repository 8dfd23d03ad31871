"""PUT /sendToDevice and the to_device section of /sync: delivered once, deleted when the next
sync acknowledges it, again when the acknowledgement never came; idempotent per transaction
ID; "*" fan-out; remote recipients as m.direct_to_device EDUs; size and shape checks."""

from __future__ import annotations

import asyncio
from typing import Any

from homeserver.app import Homeserver
from homeserver.streams.tokens import StreamToken
from tests.harness import TestServer
from tests.sync.helpers import sync
from tests.to_device.helpers import send_to_device, to_device_events


async def _inbox_size(hs: Homeserver, user_id: str, device_id: str) -> int:
    return len(await hs.store.device_inbox.get_messages(user_id, device_id, 0, 2**62, 1000))


async def test_delivered_once_and_deleted_after_ack(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    first = await sync(server, bob)
    assert to_device_events(first) == []
    await send_to_device(
        server, alice, {bob.user_id: {bob.device_id: {"secret": 1}}}, event_type="m.room_key"
    )
    got = await sync(server, bob, since=first["next_batch"])
    assert to_device_events(got) == [
        {"type": "m.room_key", "sender": alice.user_id, "content": {"secret": 1}}
    ]
    assert StreamToken.parse(got["next_batch"]).to_device > 0
    assert await _inbox_size(hs, bob.user_id, bob.device_id) == 1  # not acknowledged yet
    after = await sync(server, bob, since=got["next_batch"])
    assert to_device_events(after) == []
    assert await _inbox_size(hs, bob.user_id, bob.device_id) == 0


async def test_redelivered_when_not_acknowledged(server: TestServer):
    alice = await server.register("alice")
    bob = await server.register("bob")
    first = await sync(server, bob)
    await send_to_device(server, alice, {bob.user_id: {bob.device_id: {"n": 1}}})
    lost = await sync(server, bob, since=first["next_batch"])
    assert [e["content"] for e in to_device_events(lost)] == [{"n": 1}]
    # The response was lost: the client retries with the same since and gets it again.
    retried = await sync(server, bob, since=first["next_batch"])
    assert [e["content"] for e in to_device_events(retried)] == [{"n": 1}]
    # An initial sync (no since) acknowledges nothing either.
    initial = await sync(server, bob)
    assert [e["content"] for e in to_device_events(initial)] == [{"n": 1}]
    done = await sync(server, bob, since=retried["next_batch"])
    assert to_device_events(done) == []


async def test_same_txn_id_delivers_once(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    messages = {bob.user_id: {bob.device_id: {"n": 1}}}
    await send_to_device(server, alice, messages, txn_id="t1")
    await send_to_device(server, alice, messages, txn_id="t1")
    assert await _inbox_size(hs, bob.user_id, bob.device_id) == 1
    # The scope is the sending device: the same txnId from another device is another request.
    alice_phone = await server.login_device(alice, "PHONE")
    await send_to_device(server, alice_phone, messages, txn_id="t1")
    await send_to_device(server, alice, messages, txn_id="t2")
    body = await sync(server, bob)
    assert [e["sender"] for e in to_device_events(body)] == [alice.user_id] * 3


async def test_star_fans_out_and_a_named_device_wins(server: TestServer):
    alice = await server.register("alice")
    bob = await server.register("bob")
    bob_phone = await server.login_device(bob, "PHONE")
    await send_to_device(
        server,
        alice,
        {bob.user_id: {"*": {"to": "all"}, "PHONE": {"to": "phone"}}},
    )
    on_laptop = await sync(server, bob)
    on_phone = await sync(server, bob_phone)
    assert [e["content"] for e in to_device_events(on_laptop)] == [{"to": "all"}]
    assert [e["content"] for e in to_device_events(on_phone)] == [{"to": "phone"}]


async def test_unknown_local_users_and_devices_are_skipped(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    await send_to_device(
        server,
        alice,
        {
            "@nobody:test.example": {"*": {"x": 1}},
            bob.user_id: {"NOSUCHDEVICE": {"x": 2}, bob.device_id: {"x": 3}},
        },
    )
    assert await _inbox_size(hs, "@nobody:test.example", "*") == 0
    assert await _inbox_size(hs, bob.user_id, "NOSUCHDEVICE") == 0
    assert [e["content"] for e in to_device_events(await sync(server, bob))] == [{"x": 3}]


async def test_remote_recipients_become_one_edu_per_server(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    await send_to_device(
        server,
        alice,
        {
            "@carol:remote.example": {"DEV1": {"a": 1}, "*": {"a": 2}},
            "@dave:remote.example": {"DEV2": {"a": 3}},
            "@erin:other.example": {"*": {"a": 4}},
            bob.user_id: {bob.device_id: {"a": 5}},
        },
        event_type="m.room_key_request",
    )
    entries = await hs.store.outbox.get_due(now=2**62)
    by_server = {e.destination: e.payload for e in entries}
    assert set(by_server) == {"remote.example", "other.example"}
    remote = by_server["remote.example"]
    assert remote["kind"] == "edu" and remote["edu_type"] == "m.direct_to_device"
    content = remote["content"]
    assert content["sender"] == alice.user_id and content["type"] == "m.room_key_request"
    assert content["messages"] == {
        "@carol:remote.example": {"DEV1": {"a": 1}, "*": {"a": 2}},
        "@dave:remote.example": {"DEV2": {"a": 3}},
    }
    other = by_server["other.example"]["content"]
    assert other["messages"] == {"@erin:other.example": {"*": {"a": 4}}}
    assert content["message_id"] and content["message_id"] != other["message_id"]
    # Retrying the request queues nothing more.
    before = len(entries)
    status, _ = await server.call(
        "PUT", "/sendToDevice/m.x/same", alice, json={"messages": {"@c:remote.example": {"D": {}}}}
    )
    assert status == 200
    status, _ = await server.call(
        "PUT", "/sendToDevice/m.x/same", alice, json={"messages": {"@c:remote.example": {"D": {}}}}
    )
    assert status == 200
    assert len(await hs.store.outbox.get_due(now=2**62)) == before + 1


async def test_many_messages_to_one_server_are_split_into_edus(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    big = {"blob": "x" * 30000}
    messages = {f"@u{i}:remote.example": {"D": big} for i in range(5)}
    await send_to_device(server, alice, messages)
    entries = await hs.store.outbox.get_due(now=2**62)
    assert len(entries) >= 3  # 150 kB cannot go in one 64 kB EDU
    delivered: dict[str, Any] = {}
    for entry in entries:
        delivered.update(entry.payload["content"]["messages"])
    assert delivered == messages
    assert len({e.payload["content"]["message_id"] for e in entries}) == len(entries)


async def test_oversize_message_is_413(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    # Exactly at the limit is fine; one byte more is not.
    at_limit = {"b": "x" * (65536 - len('{"b":""}'))}
    await send_to_device(server, alice, {bob.user_id: {bob.device_id: at_limit}})
    too_big = {"b": "x" * (65537 - len('{"b":""}'))}
    body = await send_to_device(server, alice, {bob.user_id: {bob.device_id: too_big}}, expect=413)
    assert body["errcode"] == "M_TOO_LARGE"
    body = await send_to_device(server, alice, {"@x:remote.example": {"*": too_big}}, expect=413)
    assert body["errcode"] == "M_TOO_LARGE"
    assert await _inbox_size(hs, bob.user_id, bob.device_id) == 1
    assert await hs.store.outbox.get_due(now=2**62) == []


async def test_bad_bodies_are_400(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    cases: list[tuple[Any, str]] = [
        ({}, "M_MISSING_PARAM"),
        ({"messages": []}, "M_BAD_JSON"),
        ({"messages": "x"}, "M_BAD_JSON"),
        ({"messages": {bob.user_id: []}}, "M_BAD_JSON"),
        ({"messages": {bob.user_id: {bob.device_id: "text"}}}, "M_BAD_JSON"),
        ({"messages": {bob.user_id: {bob.device_id: None}}}, "M_BAD_JSON"),
        ({"messages": {"bob": {"*": {}}}}, "M_INVALID_PARAM"),
        ({"messages": {"@bob:bad server": {"*": {}}}}, "M_INVALID_PARAM"),
        ({"messages": {bob.user_id: {"": {}}}}, "M_INVALID_PARAM"),
        ([], "M_BAD_JSON"),
    ]
    for index, (body, errcode) in enumerate(cases):
        status, answer = await server.call("PUT", f"/sendToDevice/m.x/bad{index}", alice, json=body)
        assert (status, answer["errcode"]) == (400, errcode), body
    status, answer = await server.call(
        "PUT", "/sendToDevice/m.x/notjson", alice, data=b"{nope", headers={}
    )
    assert (status, answer["errcode"]) == (400, "M_NOT_JSON")
    status, _ = await server.call("PUT", "/sendToDevice/m.x/anon", json={"messages": {}})
    assert status == 401
    assert await _inbox_size(hs, bob.user_id, bob.device_id) == 0
    # A refused request did not use up its transaction ID.
    await send_to_device(server, alice, {bob.user_id: {"*": {}}}, txn_id="bad0")
    assert await _inbox_size(hs, bob.user_id, bob.device_id) == 1


async def test_long_poll_is_woken_by_a_to_device_message(server: TestServer):
    alice = await server.register("alice")
    bob = await server.register("bob")
    first = await sync(server, bob)
    poll = asyncio.create_task(sync(server, bob, since=first["next_batch"], timeout="20000"))
    await asyncio.wait_for(server.hs.notifier.parked(), 10)
    assert not poll.done()
    await send_to_device(server, alice, {bob.user_id: {"*": {"wake": True}}})
    woke = await asyncio.wait_for(poll, 10)
    assert [e["content"] for e in to_device_events(woke)] == [{"wake": True}]


async def test_limited_to_100_per_sync_and_next_batch_resumes(server: TestServer, hs: Homeserver):
    bob = await server.register("bob")
    first = await sync(server, bob)
    async with hs.store.db.transaction("test_fill_inbox") as txn:
        for n in range(130):
            message = {"type": "m.test", "sender": "@a:test.example", "content": {"n": n}}
            await hs.store.device_inbox.add_messages_txn(
                txn, [(bob.user_id, bob.device_id, message)]
            )
    page1 = await sync(server, bob, since=first["next_batch"])
    assert [e["content"]["n"] for e in to_device_events(page1)] == list(range(100))
    page2 = await sync(server, bob, since=page1["next_batch"], timeout="10000")
    assert [e["content"]["n"] for e in to_device_events(page2)] == list(range(100, 130))
    assert await _inbox_size(hs, bob.user_id, bob.device_id) == 30
    await sync(server, bob, since=page2["next_batch"])
    assert await _inbox_size(hs, bob.user_id, bob.device_id) == 0


async def test_only_the_addressed_device_gets_it(server: TestServer):
    alice = await server.register("alice")
    bob = await server.register("bob")
    bob_phone = await server.login_device(bob, "PHONE")
    await send_to_device(server, alice, {bob.user_id: {"PHONE": {"only": "phone"}}})
    assert to_device_events(await sync(server, bob)) == []
    assert len(to_device_events(await sync(server, bob_phone))) == 1
