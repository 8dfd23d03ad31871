"""Which servers our room's events and state are served to: only a server with a user joined to
the room now (Synapse's ``assert_host_in_room``), whatever event ID it learnt and however.

A hostile peer (a fake remote with its own key, tests.federation.received_helpers.Remote) whose
only membership in the room is a ban of one of its users (a moderation tool's pre-emptive ban),
a pending invite, or a past leave asks every room endpoint about an event it learnt and about one
sent after; each answers 403 ``M_FORBIDDEN``. A joined server is still answered (the full
answers are in test_state_endpoints.py and test_history_visibility_serving.py), and
``get_missing_events`` answers at most 20 events, as Synapse does. Both engines.
"""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from tests.builders import create_public_room
from tests.federation.received_helpers import Remote, signed_request
from tests.harness import TestServer, TestUser
from tests.http_client import q

V1 = "/_matrix/federation/v1"


async def _send(server: TestServer, alice: TestUser, room_id: str, body: str) -> str:
    # Straight to the event sender: 25 messages through /send would hit the rate limiter.
    draft = EventDraft("m.room.message", alice.user_id, {"msgtype": "m.text", "body": body})
    return (await server.hs.sender.send(room_id, draft)).event_id


async def _member_event_id(server: TestServer, room_id: str, user_id: str) -> str:
    event_id = await server.hs.store.state.get_current_state_event_id(
        room_id, "m.room.member", user_id
    )
    assert event_id is not None
    return event_id


async def _membership(
    server: TestServer, alice: TestUser, room_id: str, remote: Remote, kind: str
) -> str:
    """Give ``remote`` its one membership of ``kind``; the event ID it learns from it."""
    user_id = remote.user("r")
    if kind == "ban":
        status, answer = await server.call(
            "POST", f"/rooms/{room_id}/ban", alice, json={"user_id": user_id, "reason": "spam"}
        )
        assert status == 200, answer
        return await _member_event_id(server, room_id, user_id)
    if kind in ("invite", "leave"):
        status, answer = await server.call(
            "POST", f"/rooms/{room_id}/invite", alice, json={"user_id": user_id}
        )
        assert status == 200, answer
        if kind == "invite":
            return await _member_event_id(server, room_id, user_id)
    await remote.join(server.hs, room_id)
    event_id, pdu = await remote.build(
        server.hs,
        room_id,
        type="m.room.member",
        sender=user_id,
        state_key=user_id,
        content={"membership": "leave"},
    )
    await remote.receive(server.hs, pdu)
    return event_id


def _requests(room_id: str, event_id: str) -> list[tuple[str, str, Any]]:
    return [
        ("GET", f"{V1}/state/{q(room_id)}?event_id={q(event_id)}", None),
        ("GET", f"{V1}/state_ids/{q(room_id)}?event_id={q(event_id)}", None),
        ("GET", f"{V1}/event_auth/{q(room_id)}/{q(event_id)}", None),
        ("GET", f"{V1}/backfill/{q(room_id)}?v={q(event_id)}&limit=50", None),
        (
            "POST",
            f"{V1}/get_missing_events/{q(room_id)}",
            {"earliest_events": [], "latest_events": [event_id], "limit": 50},
        ),
        ("GET", f"{V1}/event/{q(event_id)}", None),
    ]


@pytest.mark.parametrize("kind", ["ban", "invite", "leave"])
async def test_a_server_without_a_joined_user_gets_nothing(server: TestServer, kind: str) -> None:
    alice = await server.register("alice")
    room_id = await create_public_room(server, alice, preset="private_chat")
    secret = await _send(server, alice, room_id, "before")
    remote = Remote()
    await remote.seed_key(server.hs)
    learnt = await _membership(server, alice, room_id, remote, kind)
    after = await _send(server, alice, room_id, "after its membership")
    for event_id in (learnt, secret, after):
        for method, path, body in _requests(room_id, event_id):
            status, answer = await signed_request(server, remote, method, path, body)
            assert status == 403, (kind, path, answer)
            assert answer["errcode"] == "M_FORBIDDEN", (kind, path, answer)


async def test_a_joined_server_is_answered_and_get_missing_events_gives_at_most_20(
    server: TestServer,
) -> None:
    alice = await server.register("alice")
    room_id = await create_public_room(server, alice)
    remote = Remote()
    await remote.seed_key(server.hs)
    await remote.join(server.hs, room_id)
    ids = [await _send(server, alice, room_id, f"message {n}") for n in range(25)]
    for method, path, body in _requests(room_id, ids[-1]):
        status, answer = await signed_request(server, remote, method, path, body)
        assert status == 200, (path, answer)
    room_version = await server.hs.received_events.room_version_of(room_id)
    status, answer = await signed_request(
        server,
        remote,
        "POST",
        f"{V1}/get_missing_events/{q(room_id)}",
        {"earliest_events": [], "latest_events": [ids[-1]], "limit": 100},
    )
    assert status == 200, answer
    served = [Event(p, room_version).event_id for p in answer["events"]]
    # The 20 closest to the latest event, oldest first.
    assert served == ids[-21:-1]


async def test_a_name_that_ends_a_joined_servers_name_is_not_that_server(
    server: TestServer,
) -> None:
    alice = await server.register("alice")
    room_id = await create_public_room(server, alice)
    member = Remote()
    await member.seed_key(server.hs)
    await member.join(server.hs, room_id)
    event_id = await _send(server, alice, room_id, "hello")
    # "localhost:PORT" ends in ":PORT": a server named "PORT" has no user in the room.
    suffix = Remote(name=member.name.split(":", 1)[1])
    await suffix.seed_key(server.hs)
    status, answer = await signed_request(server, suffix, "GET", f"{V1}/event/{q(event_id)}")
    assert status == 403, answer
    status, answer = await signed_request(server, member, "GET", f"{V1}/event/{q(event_id)}")
    assert status == 200, answer
