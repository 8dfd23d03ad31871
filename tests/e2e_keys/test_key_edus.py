"""Key changes of a local user queue EDUs for the servers sharing a room with them, in the
transaction that makes the change: m.device_list_update (new keys, signatures, deletion, with
prev_id chaining the user's updates) and m.signing_key_update (both engines)."""

from __future__ import annotations

import copy
from typing import Any

from signedjson.sign import sign_json

from homeserver.events.draft import EventDraft
from tests.builders import create_room
from tests.e2e_keys.helpers import (
    CrossSigning,
    Device,
    give_password,
    outbox_edus,
    password_auth,
    upload,
    upload_device,
)
from tests.harness import TestServer as Server

REMOTE = "remote.example"


async def room_with_remote_member(server: Server, creator: Any) -> str:
    room = await create_room(server, creator, preset="public_chat")
    draft = EventDraft("m.room.member", f"@x:{REMOTE}", {"membership": "join"}, f"@x:{REMOTE}")
    await server.hs.sender.send(room, draft)
    async with server.hs.store.db.transaction("test_clear_outbox") as txn:
        await txn.execute("DELETE FROM federation_outbox")
    return room


async def test_device_key_updates_reach_servers_sharing_a_room(server: Server) -> None:
    alice = await server.register("alice")
    await server.hs.store.users.set_device_display_name(alice.user_id, alice.device_id, "Laptop")
    lonely = await server.register("lonely")
    await room_with_remote_member(server, alice)

    device = Device(alice.user_id, alice.device_id)
    keys = device.device_keys()
    assert (await upload(server, alice, {"device_keys": keys}))[0] == 200
    await upload_device(server, lonely)  # shares no room with a remote server
    edus = await outbox_edus(server)
    first_position = await server.hs.store.device_lists.get_user_position(alice.user_id)
    assert edus == [
        (
            REMOTE,
            "m.device_list_update",
            {
                "user_id": alice.user_id,
                "device_id": alice.device_id,
                "stream_id": first_position,
                "prev_id": [],
                "keys": keys,  # and no device name: that stays on this server
            },
        )
    ]
    # The same keys again: nothing new to say.
    assert (await upload(server, alice, {"device_keys": keys}))[0] == 200
    assert len(await outbox_edus(server)) == 1

    # A second device's keys: its update names the first as prev_id.
    phone = await server.login_device(alice, "PHONE")
    await upload_device(server, phone)
    edus = await outbox_edus(server)
    assert len(edus) == 2
    assert edus[1][2]["device_id"] == "PHONE"
    assert edus[1][2]["prev_id"] == [first_position]
    assert edus[1][2]["stream_id"] > first_position


async def test_device_deletion_is_announced(server: Server) -> None:
    alice = await server.register("alice")
    await give_password(server, alice)
    await room_with_remote_member(server, alice)
    phone = await server.login_device(alice, "PHONE")
    await upload_device(server, phone)
    body = {"auth": password_auth(alice)}
    assert (await server.call("DELETE", "/devices/PHONE", alice, json=body))[0] == 200
    last = (await outbox_edus(server))[-1]
    assert last[:2] == (REMOTE, "m.device_list_update")
    assert last[2]["deleted"] is True and last[2]["device_id"] == "PHONE"
    assert "keys" not in last[2]


async def test_cross_signing_and_signatures_are_announced(server: Server) -> None:
    alice = await server.register("alice")
    await room_with_remote_member(server, alice)
    device = await upload_device(server, alice)
    cs = CrossSigning(alice.user_id)
    status, _ = await server.call(
        "POST", "/keys/device_signing/upload", alice, json=cs.upload_body()
    )
    assert status == 200
    destination, edu_type, content = (await outbox_edus(server))[-1]
    assert (destination, edu_type) == (REMOTE, "m.signing_key_update")
    # The user-signing key never leaves the server.
    assert content == {
        "user_id": alice.user_id,
        "master_key": cs.master_key(),
        "self_signing_key": cs.self_signing_key(),
    }

    signed = sign_json(copy.deepcopy(device.device_keys()), alice.user_id, cs.self_signing)
    status, answer = await server.call(
        "POST", "/keys/signatures/upload", alice, json={alice.user_id: {alice.device_id: signed}}
    )
    assert (status, answer) == (200, {"failures": {}})
    destination, edu_type, content = (await outbox_edus(server))[-1]
    assert (destination, edu_type) == (REMOTE, "m.device_list_update")
    # The keys travel with the new signature, so the other server's users can verify it.
    assert content["keys"]["signatures"] == signed["signatures"]


async def test_no_edus_without_remote_members(server: Server) -> None:
    alice = await server.register("alice")
    await create_room(server, alice, preset="public_chat")
    await upload_device(server, alice)
    cs = CrossSigning(alice.user_id)
    body: dict[str, Any] = cs.upload_body()
    assert (await server.call("POST", "/keys/device_signing/upload", alice, json=body))[0] == 200
    assert await outbox_edus(server) == []
