"""matrix-nio, a real client library, against a real ``homeserver run`` process: two users
register, create rooms with every preset and several room versions, invite, join, talk, and
see each other's messages and state changes through /sync."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nio import (
    JoinResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomMessageText,
    RoomPreset,
    RoomPutStateResponse,
    RoomSendResponse,
    SyncResponse,
)

from tests.real_clients.nio_helpers import NIO_CONFIG, register, sync_until
from tests.real_clients.server_process import running_homeserver

SERVER_NAME = "nio.test"


def _messages_in(response: SyncResponse, room_id: str) -> list[str]:
    room = response.rooms.join.get(room_id)
    if room is None:
        return []
    return [e.body for e in room.timeline.events if isinstance(e, RoomMessageText)]


CASES = [
    (RoomPreset.private_chat, None),
    (RoomPreset.trusted_private_chat, None),
    (RoomPreset.public_chat, None),
    (RoomPreset.private_chat, "1"),
    (RoomPreset.public_chat, "10"),
    (RoomPreset.private_chat, "11"),
    (RoomPreset.trusted_private_chat, "12"),
]


async def test_two_nio_users_talk_in_every_preset_and_version(tmp_path: Path) -> None:
    with running_homeserver(tmp_path, SERVER_NAME, NIO_CONFIG) as base_url:
        async with asyncio.timeout(300):
            await _talk(base_url)


async def _talk(base_url: str) -> None:
    alice = await register(base_url, SERVER_NAME, "alice")
    bob = await register(base_url, SERVER_NAME, "bob")
    try:
        await alice.sync(timeout=0)
        await bob.sync(timeout=0)
        for preset, version in CASES:
            kwargs = {"room_version": version} if version else {}
            created = await alice.room_create(
                preset=preset,
                name=f"{preset.value} v{version}",
                invite=[bob.user_id],
                **kwargs,
            )
            assert isinstance(created, RoomCreateResponse), created
            room_id = created.room_id

            await sync_until(bob, lambda r, room_id=room_id: room_id in r.rooms.invite)
            joined = await bob.join(room_id)
            assert isinstance(joined, JoinResponse), joined

            sent = await alice.room_send(
                room_id, "m.room.message", {"msgtype": "m.text", "body": f"hi {room_id}"}
            )
            assert isinstance(sent, RoomSendResponse), sent
            await sync_until(
                bob, lambda r, room_id=room_id: f"hi {room_id}" in _messages_in(r, room_id)
            )

            reply = await bob.room_send(
                room_id, "m.room.message", {"msgtype": "m.text", "body": "hello alice"}
            )
            assert isinstance(reply, RoomSendResponse), reply
            await sync_until(
                alice, lambda r, room_id=room_id: "hello alice" in _messages_in(r, room_id)
            )

            topic = await alice.room_put_state(room_id, "m.room.topic", {"topic": "new"})
            assert isinstance(topic, RoomPutStateResponse), topic
            await sync_until(bob, lambda r: True)
            assert bob.rooms[room_id].topic == "new"
            assert bob.rooms[room_id].name == f"{preset.value} v{version}"

        # an invite after creation, into a public room
        later = await alice.room_create(preset=RoomPreset.public_chat)
        assert isinstance(later, RoomCreateResponse)
        invited = await alice.room_invite(later.room_id, bob.user_id)
        assert isinstance(invited, RoomInviteResponse), invited
        await sync_until(bob, lambda r: later.room_id in r.rooms.invite)
    finally:
        await alice.close()
        await bob.close()
