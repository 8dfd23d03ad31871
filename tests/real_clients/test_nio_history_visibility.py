"""matrix-nio against a real ``homeserver run`` process: a user who joins a room whose history
is for ``joined`` members sees none of what was said before he joined, through /sync (initial
and incremental) and /messages (``room_messages``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nio import (
    AsyncClient,
    JoinResponse,
    MessageDirection,
    RoomCreateResponse,
    RoomMessagesResponse,
    RoomMessageText,
    RoomPreset,
    RoomSendResponse,
    SyncResponse,
)

from tests.real_clients.nio_helpers import NIO_CONFIG, register, sync_until
from tests.real_clients.server_process import running_homeserver

SERVER_NAME = "nio-visibility.test"


def _texts(events: list[object]) -> list[str]:
    return [e.body for e in events if isinstance(e, RoomMessageText)]


def _timeline(response: SyncResponse, room_id: str) -> list[str]:
    room = response.rooms.join.get(room_id)
    return [] if room is None else _texts(room.timeline.events)


async def test_nio_late_joiner_sees_no_joined_history(tmp_path: Path) -> None:
    with running_homeserver(tmp_path, SERVER_NAME, NIO_CONFIG) as base_url:
        async with asyncio.timeout(120):
            await _late_join(base_url)


async def _late_join(base_url: str) -> None:
    alice = await register(base_url, SERVER_NAME, "alice")
    bob = await register(base_url, SERVER_NAME, "bob")
    fresh = AsyncClient(base_url, bob.user_id)
    try:
        created = await alice.room_create(
            preset=RoomPreset.public_chat,
            initial_state=[
                {
                    "type": "m.room.history_visibility",
                    "state_key": "",
                    "content": {"history_visibility": "joined"},
                }
            ],
        )
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id
        await bob.sync(timeout=0)
        for body in ("secret one", "secret two"):
            sent = await alice.room_send(
                room_id, "m.room.message", {"msgtype": "m.text", "body": body}
            )
            assert isinstance(sent, RoomSendResponse), sent
        joined = await bob.join(room_id)
        assert isinstance(joined, JoinResponse), joined
        sent = await alice.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": "welcome"}
        )
        assert isinstance(sent, RoomSendResponse), sent

        # Incremental /sync from before the join.
        seen: list[str] = []

        def arrived(response: SyncResponse) -> bool:
            seen.extend(_timeline(response, room_id))
            return "welcome" in seen

        await sync_until(bob, arrived)
        assert seen == ["welcome"]
        # Initial /sync of a fresh client.
        assert bob.access_token and bob.device_id
        fresh.restore_login(bob.user_id, bob.device_id, bob.access_token)
        initial = await fresh.sync(timeout=0)
        assert isinstance(initial, SyncResponse), initial
        assert _timeline(initial, room_id) == ["welcome"]
        # /messages backwards from now, and from the timeline's prev_batch.
        assert bob.next_batch
        history = await bob.room_messages(
            room_id, bob.next_batch, direction=MessageDirection.back, limit=100
        )
        assert isinstance(history, RoomMessagesResponse), history
        assert _texts(history.chunk) == ["welcome"]
        prev_batch = initial.rooms.join[room_id].timeline.prev_batch
        older = await bob.room_messages(room_id, prev_batch, limit=100)
        assert isinstance(older, RoomMessagesResponse), older
        assert _texts(older.chunk) == []
        # alice, joined throughout, reads it all.
        everything = await alice.room_messages(room_id, bob.next_batch, limit=100)
        assert isinstance(everything, RoomMessagesResponse), everything
        assert _texts(everything.chunk) == ["welcome", "secret two", "secret one"]
    finally:
        await fresh.close()
        await alice.close()
        await bob.close()
