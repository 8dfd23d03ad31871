"""Typing, receipts and presence over federation on both engines: the m.typing, m.receipt and
m.presence EDUs a remote server sends us in /send reach our users' /sync, and our users' typing,
public receipts and presence are queued for the servers in their rooms. Refused: updates about
another server's users (spoofing), users not joined to the room or sharing no room with ours,
private receipts, servers banned by the room's ACL."""

from __future__ import annotations

from typing import Any

from homeserver.app import Homeserver
from tests.builders import create_public_room
from tests.ephemeral.test_typing import typing_in
from tests.federation.received_helpers import Remote
from tests.federation.test_e2e_edus import send_edus
from tests.harness import TestServer
from tests.sync.helpers import sync


def _typing(room_id: str, user_id: str, typing: bool) -> dict[str, Any]:
    return {
        "edu_type": "m.typing",
        "content": {"room_id": room_id, "user_id": user_id, "typing": typing},
    }


def _receipt(room_id: str, user_id: str, event_id: str, kind: str = "m.read") -> dict[str, Any]:
    return {
        "edu_type": "m.receipt",
        "content": {room_id: {kind: {user_id: {"event_ids": [event_id], "data": {"ts": 1234}}}}},
    }


def _presence(*pushes: dict[str, Any]) -> dict[str, Any]:
    return {"edu_type": "m.presence", "content": {"push": list(pushes)}}


def _receipts_in(body: dict[str, Any], room_id: str) -> dict[str, Any]:
    room = body["rooms"]["join"].get(room_id, {})
    content: dict[str, Any] = {}
    for event in room.get("ephemeral", {}).get("events", []):
        if event["type"] == "m.receipt":
            content.update(event["content"])
    return content


async def _queued_edus(hs: Homeserver, destination: str) -> list[tuple[str, Any]]:
    entries = await hs.store.outbox.head(destination, 100)
    return [(e.payload["edu_type"], e.payload["content"]) for e in entries if e.kind == "edu"]


async def test_remote_typing_receipts_and_presence_reach_sync(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    room_id = await create_public_room(server, alice)
    remote = Remote()
    await remote.seed_key(hs)
    await remote.join(hs, room_id, "r")
    rob, stranger = remote.user("r"), remote.user("stranger")  # stranger never joined
    other = Remote()  # another server, naming remote's user
    await other.seed_key(hs)
    first = await sync(server, alice, set_presence="offline")

    await send_edus(
        server,
        remote,
        [
            _typing(room_id, rob, True),
            _typing(room_id, stranger, True),
            _typing(room_id, alice.user_id, True),  # not remote's user
            _receipt(room_id, rob, "$unknown-event:elsewhere"),  # unknown events are fine
            _receipt(room_id, stranger, "$e:x"),
            _receipt(room_id, rob, "$private:x", "m.read.private"),
            _presence(
                {
                    "user_id": rob,
                    "presence": "online",
                    "status_msg": "here",
                    "currently_active": True,
                },
                {"user_id": stranger, "presence": "online"},  # shares no room with ours
                {"user_id": alice.user_id, "presence": "offline"},  # ours
            ),
            {"edu_type": "m.typing", "content": "junk"},
            {"edu_type": "m.presence", "content": {"push": "junk"}},
        ],
    )
    await send_edus(server, other, [_typing(room_id, rob, False), _receipt(room_id, rob, "$x:y")])

    got = await sync(server, alice, since=first["next_batch"], set_presence="offline")
    assert typing_in(got, room_id) == [rob]
    assert _receipts_in(got, room_id) == {
        "$unknown-event:elsewhere": {"m.read": {rob: {"ts": 1234}}}
    }
    presence = {e["sender"]: e["content"] for e in got["presence"]["events"]}
    assert set(presence) == {rob}
    assert presence[rob]["presence"] == "online" and presence[rob]["status_msg"] == "here"
    assert await hs.store.presence.get(stranger) is None
    assert await hs.store.presence.get(alice.user_id) is None
    status, body = await server.call("GET", f"/presence/{rob}/status", alice)
    assert status == 200 and body["presence"] == "online"

    # The remote user stops typing.
    await send_edus(server, remote, [_typing(room_id, rob, False)])
    stopped = await sync(server, alice, since=got["next_batch"], set_presence="offline")
    assert typing_in(stopped, room_id) == []

    # A server the room's ACL bans is not heard.
    status, _ = await server.call(
        "PUT",
        f"/rooms/{room_id}/state/m.room.server_acl",
        alice,
        json={"allow": ["*"], "deny": ["localhost"]},  # ACLs name servers without their port
    )
    assert status == 200
    await send_edus(server, remote, [_typing(room_id, rob, True)])
    assert hs.typing.typers(room_id) == []


async def test_our_typing_receipts_and_presence_are_sent(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    room_id = await create_public_room(server, alice)
    remote = Remote()
    await remote.seed_key(hs)
    await remote.join(hs, room_id, "r")
    await hs.store.outbox.delete([e.id for e in await hs.store.outbox.head(remote.name, 100)])

    await server.call(
        "PUT", f"/rooms/{room_id}/typing/{alice.user_id}", alice, json={"typing": True}
    )
    status, sent = await server.call(
        "PUT", f"/rooms/{room_id}/send/m.room.message/t1", alice, json={"body": "hi"}
    )
    assert status == 200
    event_id = sent["event_id"]
    for receipt_type in ("m.read.private", "m.read"):
        status, _ = await server.call(
            "POST", f"/rooms/{room_id}/receipt/{receipt_type}/{event_id}", alice, json={}
        )
        assert status == 200
    await server.call(
        "PUT", f"/presence/{alice.user_id}/status", alice, json={"presence": "unavailable"}
    )

    edus = await _queued_edus(hs, remote.name)
    assert ("m.typing", {"room_id": room_id, "user_id": alice.user_id, "typing": True}) in edus
    receipts = [c for t, c in edus if t == "m.receipt"]
    assert receipts == [
        {
            room_id: {
                "m.read": {
                    alice.user_id: {
                        "event_ids": [event_id],
                        "data": {"ts": receipts[0][room_id]["m.read"][alice.user_id]["data"]["ts"]},
                    }
                }
            }
        }
    ]  # the private receipt stays here
    presence = [c["push"][0] for t, c in edus if t == "m.presence"]
    # Typing made alice online (activity); then she set unavailable.
    assert [p["presence"] for p in presence] == ["online", "unavailable"]
    assert all(p["user_id"] == alice.user_id for p in presence)
