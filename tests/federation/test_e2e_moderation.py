"""Moderation across two of our servers over real HTTPS: a server whose only membership is a
pre-emptive ban of one of its users is refused every room endpoint (asking with the ban's event
ID); once invited it is still refused; once its user joins it is answered; its user kicked, it
still receives the kick, and is refused again. Both engines."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from homeserver.federation.client import FederationHttpError, fed_path
from homeserver.storage import Store
from tests.federation.h4_helpers import Peer, second_store, two_servers

__all__ = ["second_store"]  # the fixture, used below
V1 = "/_matrix/federation/v1"


async def _asks(b: Peer, a: Peer, room_id: str, event_id: str) -> list[int]:
    """The statuses A answers B's /event, /state_ids and /backfill about ``event_id`` with."""
    client = b.hs.federation_client
    requests = [
        (fed_path(V1 + "/event/{}", event_id), None),
        (fed_path(V1 + "/state_ids/{}", room_id), {"event_id": event_id}),
        (fed_path(V1 + "/backfill/{}", room_id), {"v": event_id, "limit": "10"}),
    ]
    statuses = []
    for path, query in requests:
        try:
            await client.get_json(a.name, path, query)
            statuses.append(200)
        except FederationHttpError as e:
            assert e.errcode == "M_FORBIDDEN" or e.status != 403, e
            statuses.append(e.status)
    return statuses


async def _membership_on(peer: Peer, room_id: str, user_id: str, wanted: str) -> None:
    """Wait (a generous bound, not a timing) until ``peer`` has ``user_id``'s membership."""
    deadline = time.monotonic() + 60
    while True:
        event = await peer.hs.store.state.get_current_state_event(room_id, "m.room.member", user_id)
        if event is not None and event.membership == wanted:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{user_id} never became {wanted} on {peer.name}")
        await asyncio.sleep(0.05)


async def test_banned_invited_joined_kicked(
    tmp_path: Path, store: Store, second_store: Store
) -> None:
    async with two_servers(tmp_path, store, second_store) as (a, b):
        alice = await a.user("alice")
        bob = await b.user("bob")
        room_id = await alice.create_room(preset="private_chat")
        await alice.send_message(room_id, "before anyone from B")
        spammer = f"@spammer:{b.name}"
        await alice.ok("POST", f"/rooms/{room_id}/ban", {"user_id": spammer})
        ban = await a.hs.store.state.get_current_state_event(room_id, "m.room.member", spammer)
        assert ban is not None
        assert await _asks(b, a, room_id, ban.event_id) == [403, 403, 403]

        await alice.invite(room_id, bob.user_id)
        await bob.wait_for_invite(room_id, timeout=60)
        assert await _asks(b, a, room_id, ban.event_id) == [403, 403, 403]

        assert await bob.join(room_id) == room_id
        assert await _asks(b, a, room_id, ban.event_id) == [200, 200, 200]

        await alice.ok("POST", f"/rooms/{room_id}/kick", {"user_id": bob.user_id})
        await _membership_on(b, room_id, bob.user_id, "leave")
        assert await _asks(b, a, room_id, ban.event_id) == [403, 403, 403]
