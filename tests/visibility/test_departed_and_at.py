"""A departed member of a room that is ``world_readable`` now, and ``/members?at=``, as Synapse:

* a departed member's /messages, /state and /members stop at their leave whatever the room's
  visibility now (Synapse's ``check_user_in_room_or_world_readable`` with departed users
  allowed, then the pagination bound at ``member_event_id``); single events (/event) are judged
  by the per-event rule alone, so what was sent while ``world_readable`` is theirs to fetch;
* ``/members?at=`` answers the state at that point only if the requester could see it then
  (Synapse's ``_user_can_see_state_at_event``): a late joiner of a ``joined`` room does not
  learn who was in it before him.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig
from tests.builders import generous_config, make_room
from tests.harness import TestServer as Server
from tests.visibility.test_client_paths import act, messages, send, set_visibility, sync


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


def member_ids(chunk: list[dict[str, Any]]) -> set[str]:
    return {e["state_key"] for e in chunk}


async def test_departed_member_of_world_readable_room_bounded_at_leave(server: Server):
    alice, bob, carol = [await server.register(n) for n in ("alice", "bob", "carol")]
    room_id = await make_room(server.hs, alice.user_id, history_visibility="shared")
    await act(server, bob, room_id, "join")
    await send(server, alice, room_id, "while bob was here")
    await act(server, bob, room_id, "leave")
    await send(server, alice, room_id, "shared after")
    await set_visibility(server, alice, room_id, "world_readable")
    public = await send(server, alice, room_id, "public after")
    await act(server, carol, room_id, "join")

    # /messages stops at his leave, whatever the visibility now.
    assert await messages(server, bob, room_id) == ["while bob was here"]
    # /state and /members: as of his leave (carol, who came later, is not there).
    status, body = await server.call("GET", f"/rooms/{room_id}/members", bob)
    assert status == 200, body
    assert member_ids(body["chunk"]) == {alice.user_id, bob.user_id}
    status, body = await server.call("GET", f"/rooms/{room_id}/state", bob)
    assert status == 200, body
    assert carol.user_id not in {e.get("state_key") for e in body}
    assert not any(
        e["type"] == "m.room.history_visibility"
        and e["content"]["history_visibility"] == "world_readable"
        for e in body
    )
    # /members?at= a point after his leave, while world_readable: that point is judged alone.
    now = (await sync(server, alice))["next_batch"]
    status, body = await server.call("GET", f"/rooms/{room_id}/members", bob, params={"at": now})
    assert status == 200 and carol.user_id in member_ids(body["chunk"])
    # A single event sent while world_readable is judged alone (Synapse's /event).
    status, body = await server.call("GET", f"/rooms/{room_id}/event/{public}", bob)
    assert status == 200 and body["content"] == {"body": "public after"}
    # A stranger peeking is not bounded: everything sent while world_readable.
    eve = await server.register("eve")
    assert await messages(server, eve, room_id) == ["public after"]
    # Once he forgets the room, he is a stranger peeking (Synapse: no membership to bound at).
    await act(server, bob, room_id, "forget")
    assert await messages(server, bob, room_id) == ["public after", "while bob was here"]


async def test_banned_member_of_world_readable_room_peeks_unbounded(server: Server):
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(server.hs, alice.user_id, history_visibility="world_readable")
    await act(server, bob, room_id, "join")
    await act(server, alice, room_id, "ban", user_id=bob.user_id, reason="spam")
    await send(server, alice, room_id, "after the ban")
    # Synapse only bounds a *leave*; a banned user reads a world_readable room as anyone.
    assert await messages(server, bob, room_id) == ["after the ban"]


async def test_members_at_a_point_the_user_could_not_see(server: Server):
    alice, bob, carol = [await server.register(n) for n in ("alice", "bob", "carol")]
    room_id = await make_room(server.hs, alice.user_id, history_visibility="joined")
    await act(server, carol, room_id, "join")
    await act(server, carol, room_id, "leave")
    before = (await sync(server, alice))["next_batch"]
    await act(server, bob, room_id, "join")
    after = (await sync(server, alice))["next_batch"]

    # Before his join the room was ``joined``: he may not see who was in it then.
    status, body = await server.call("GET", f"/rooms/{room_id}/members", bob, params={"at": before})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
    # From his join on he may.
    status, body = await server.call("GET", f"/rooms/{room_id}/members", bob, params={"at": after})
    assert status == 200, body
    assert member_ids(body["chunk"]) == {alice.user_id, bob.user_id, carol.user_id}
    # Nor once he has left: a former member is refused the point before his join too, and a
    # point after his leave is read as of his leave.
    await act(server, bob, room_id, "leave")
    status, body = await server.call(
        "GET", f"/rooms/{room_id}/members", bob, params={"at": before}
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
    await act(server, alice, room_id, "invite", user_id=carol.user_id)
    later = (await sync(server, alice))["next_batch"]
    status, body = await server.call("GET", f"/rooms/{room_id}/members", bob, params={"at": later})
    assert status == 200, body
    memberships = {e["state_key"]: e["content"]["membership"] for e in body["chunk"]}
    assert memberships[bob.user_id] == "leave" and memberships[carol.user_id] == "leave"
    # alice, joined throughout, may ask for either.
    status, body = await server.call(
        "GET", f"/rooms/{room_id}/members", alice, params={"at": before}
    )
    assert status == 200 and member_ids(body["chunk"]) == {alice.user_id, carol.user_id}


async def test_members_at_in_shared_and_world_readable_rooms(server: Server):
    alice, bob, eve = [await server.register(n) for n in ("alice", "bob", "eve")]
    shared = await make_room(server.hs, alice.user_id, history_visibility="shared")
    before = (await sync(server, alice))["next_batch"]
    await act(server, bob, shared, "join")
    # shared: a member joined since may see the state from before his join.
    status, body = await server.call("GET", f"/rooms/{shared}/members", bob, params={"at": before})
    assert status == 200 and member_ids(body["chunk"]) == {alice.user_id}
    public = await make_room(server.hs, alice.user_id, history_visibility="world_readable")
    at = (await sync(server, alice))["next_batch"]
    status, body = await server.call("GET", f"/rooms/{public}/members", eve, params={"at": at})
    assert status == 200 and member_ids(body["chunk"]) == {alice.user_id}
    # A token from before the room had any event: no state there (Synapse: 404).
    status, body = await server.call("GET", f"/rooms/{public}/members", eve, params={"at": before})
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND"), body
