"""History visibility on every client path, on both engines: a late joiner of a ``joined`` room
reads nothing from before his join (/messages, /sync initial, incremental and gappy, /context,
/event); users who never joined (an invite rejected, a ban) are refused; a room made
``world_readable`` later does not expose what was sent while it was ``joined``; a departed
member sees the room as of their leave."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig
from tests.builders import generous_config, make_room
from tests.harness import TestServer as Server
from tests.harness import TestUser


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def send(server: Server, user: TestUser, room_id: str, body: str) -> str:
    status, response = await server.call(
        "PUT", f"/rooms/{room_id}/send/m.room.message/{body}", user, json={"body": body}
    )
    assert status == 200, response
    return response["event_id"]


async def act(server: Server, user: TestUser, room_id: str, action: str, **body: Any) -> None:
    status, response = await server.call("POST", f"/rooms/{room_id}/{action}", user, json=body)
    assert status == 200, response


async def set_visibility(server: Server, user: TestUser, room_id: str, value: str) -> None:
    status, body = await server.call(
        "PUT",
        f"/rooms/{room_id}/state/m.room.history_visibility",
        user,
        json={"history_visibility": value},
    )
    assert status == 200, body


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"].get("body") for e in events if e["type"] == "m.room.message"]


async def messages(server: Server, user: TestUser, room_id: str, **params: str) -> list[str]:
    query = {"dir": "b", "limit": "100", **params}
    status, body = await server.call("GET", f"/rooms/{room_id}/messages", user, params=query)
    assert status == 200, body
    return bodies(body["chunk"])


async def sync(server: Server, user: TestUser, **params: str) -> dict[str, Any]:
    status, body = await server.call("GET", "/sync", user, params=params)
    assert status == 200, body
    return body


def joined_timeline(body: dict[str, Any], room_id: str) -> dict[str, Any]:
    return body["rooms"]["join"][room_id]["timeline"]


async def test_late_joiner_of_joined_room_reads_nothing_from_before(server: Server):
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(server.hs, alice.user_id, history_visibility="joined")
    first = await sync(server, bob)  # before bob is in the room
    secrets = [await send(server, alice, room_id, f"secret{i}") for i in range(3)]
    await act(server, bob, room_id, "join")
    after = await send(server, alice, room_id, "after")

    # /messages, both ways.
    assert await messages(server, bob, room_id) == ["after"]
    assert await messages(server, bob, room_id, dir="f") == ["after"]
    status, body = await server.call(
        "GET", f"/rooms/{room_id}/messages", bob, params={"dir": "b", "limit": "100"}
    )
    # Nothing between the room turning ``joined`` and his own join, which he sees. The genesis
    # events up to the visibility change were ``shared`` (no visibility yet): visible.
    types = [(e["type"], e.get("state_key")) for e in body["chunk"]]
    assert types == [
        ("m.room.message", None),
        ("m.room.member", bob.user_id),
        ("m.room.history_visibility", ""),
        ("m.room.join_rules", ""),
        ("m.room.power_levels", ""),
        ("m.room.member", alice.user_id),
        ("m.room.create", ""),
    ]
    # Page by page, the same events, none hidden ones.
    paged: list[str] = []
    query = {"dir": "b", "limit": "2"}
    for _ in range(10):
        status, page = await server.call("GET", f"/rooms/{room_id}/messages", bob, params=query)
        assert status == 200, page
        paged.extend(e["event_id"] for e in page["chunk"])
        if "end" not in page:
            break
        query["from"] = page["end"]
    assert paged == [e["event_id"] for e in body["chunk"]]
    # alice, joined throughout, reads it all.
    assert await messages(server, alice, room_id) == ["after", "secret2", "secret1", "secret0"]

    # /sync: initial, incremental from before the join, and gappy.
    initial = await sync(server, bob)
    assert bodies(joined_timeline(initial, room_id)["events"]) == ["after"]
    incremental = await sync(server, bob, since=first["next_batch"])
    assert bodies(joined_timeline(incremental, room_id)["events"]) == ["after"]
    limit_one = json.dumps({"room": {"timeline": {"limit": 1}}})
    gappy = await sync(server, bob, since=first["next_batch"], filter=limit_one)
    timeline = joined_timeline(gappy, room_id)
    assert [e["event_id"] for e in timeline["events"]] == [after]
    # Following prev_batch reaches no earlier message.
    older = await messages(server, bob, room_id, **{"from": timeline["prev_batch"]})
    assert older == []
    # The sync's state section carries state, never the earlier messages.
    state = initial["rooms"]["join"][room_id]["state"]["events"]
    assert not {e["event_id"] for e in state} & set(secrets)

    # /context: around a visible event, nothing earlier; an earlier event is refused.
    status, body = await server.call(
        "GET", f"/rooms/{room_id}/context/{after}", bob, params={"limit": "10"}
    )
    assert status == 200, body
    assert not {e["event_id"] for e in body["events_before"]} & set(secrets)
    assert bodies(body["events_before"]) == []
    status, body = await server.call("GET", f"/rooms/{room_id}/context/{secrets[1]}", bob)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await server.call("GET", f"/rooms/{room_id}/context/{after}", alice)
    assert bodies(body["events_before"]) == ["secret0", "secret1", "secret2"][::-1]

    # /event: an event he may not see is not found (as Synapse).
    status, body = await server.call("GET", f"/rooms/{room_id}/event/{secrets[0]}", bob)
    assert (status, body["errcode"], body["error"]) == (404, "M_NOT_FOUND", "Event not found.")
    status, body = await server.call("GET", f"/rooms/{room_id}/event/{after}", bob)
    assert status == 200 and body["content"] == {"body": "after"}


async def test_shared_and_invited_rooms_open_history_to_later_members(server: Server):
    alice, bob, carol = [await server.register(n) for n in ("alice", "bob", "carol")]
    shared = await make_room(server.hs, alice.user_id, history_visibility="shared")
    await send(server, alice, shared, "old")
    await act(server, bob, shared, "join")
    assert await messages(server, bob, shared) == ["old"]
    invited = await make_room(server.hs, alice.user_id, history_visibility="invited")
    await send(server, alice, invited, "before invite")
    await act(server, alice, invited, "invite", user_id=carol.user_id)
    await send(server, alice, invited, "while invited")
    await act(server, carol, invited, "join")
    assert await messages(server, carol, invited) == ["while invited"]
    body = await sync(server, carol)
    assert bodies(joined_timeline(body, invited)["events"]) == ["while invited"]


async def test_users_who_never_joined_are_refused(server: Server):
    alice, carol, dave = [await server.register(n) for n in ("alice", "carol", "dave")]
    room_id = await make_room(server.hs, alice.user_id, history_visibility="shared")
    message = await send(server, alice, room_id, "history")
    await act(server, alice, room_id, "invite", user_id=carol.user_id)
    await act(server, carol, room_id, "leave")  # rejects the invite
    await act(server, alice, room_id, "ban", user_id=dave.user_id, reason="spam")
    for user in (carol, dave):
        for path in (
            f"/rooms/{room_id}/messages",
            f"/rooms/{room_id}/state",
            f"/rooms/{room_id}/state/m.room.join_rules",
            f"/rooms/{room_id}/state/m.room.member/{alice.user_id}",
            f"/rooms/{room_id}/members",
            f"/rooms/{room_id}/joined_members",
            f"/rooms/{room_id}/event/{message}",
            f"/rooms/{room_id}/context/{message}",
        ):
            status, body = await server.call("GET", path, user)
            assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), (user.user_id, path, body)
    # Their /sync leave section holds only their own membership event.
    body = await sync(server, carol, filter=json.dumps({"room": {"include_leave": True}}))
    left = body["rooms"]["leave"][room_id]
    assert [e["content"]["membership"] for e in left["timeline"]["events"]] == ["leave"]
    assert left["state"]["events"] == []


async def test_world_readable_later_does_not_expose_joined_history(server: Server):
    alice, bob, eve = [await server.register(n) for n in ("alice", "bob", "eve")]
    room_id = await make_room(server.hs, alice.user_id, history_visibility="joined")
    secret = await send(server, alice, room_id, "secret")
    await set_visibility(server, alice, room_id, "world_readable")
    await send(server, alice, room_id, "public")
    # A stranger peeks: only what was sent while world_readable (and the change itself).
    status, body = await server.call(
        "GET", f"/rooms/{room_id}/messages", eve, params={"dir": "b", "limit": "100"}
    )
    assert status == 200, body
    assert bodies(body["chunk"]) == ["public"]
    assert [e["type"] for e in body["chunk"]] == ["m.room.message", "m.room.history_visibility"]
    status, body = await server.call("GET", f"/rooms/{room_id}/event/{secret}", eve)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    # A late joiner neither.
    await act(server, bob, room_id, "join")
    assert await messages(server, bob, room_id) == ["public"]
    body = await sync(server, bob)
    assert bodies(joined_timeline(body, room_id)["events"]) == ["public"]
    # world_readable lets a stranger read the state (as Synapse), not the joined-only members.
    status, body = await server.call("GET", f"/rooms/{room_id}/state", eve)
    assert status == 200 and any(e["type"] == "m.room.create" for e in body)
    status, body = await server.call("GET", f"/rooms/{room_id}/joined_members", eve)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


async def test_departed_member_sees_the_room_as_of_their_leave(server: Server):
    alice, bob, carol = [await server.register(n) for n in ("alice", "bob", "carol")]
    room_id = await make_room(server.hs, alice.user_id, history_visibility="shared")
    await act(server, bob, room_id, "join")
    await send(server, alice, room_id, "while bob was here")
    await act(server, bob, room_id, "leave")
    after = await send(server, alice, room_id, "after bob left")
    await act(server, carol, room_id, "join")
    # /joined_members: refused to anyone not joined now (as Synapse).
    status, body = await server.call("GET", f"/rooms/{room_id}/joined_members", bob)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    # /members: as of his leave, so carol who came later is not listed.
    status, body = await server.call("GET", f"/rooms/{room_id}/members", bob)
    assert status == 200, body
    members = {e["state_key"]: e["content"]["membership"] for e in body["chunk"]}
    assert members == {alice.user_id: "join", bob.user_id: "leave"}
    status, body = await server.call(
        "GET", f"/rooms/{room_id}/state/m.room.member/{carol.user_id}", bob
    )
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    # /messages and /event: up to his leave.
    assert await messages(server, bob, room_id) == ["while bob was here"]
    status, body = await server.call("GET", f"/rooms/{room_id}/event/{after}", bob)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    # A user who joins, leaves, is invited again and rejects keeps only the first stay.
    await act(server, alice, room_id, "invite", user_id=bob.user_id)
    await act(server, bob, room_id, "leave")
    status, body = await server.call("GET", f"/rooms/{room_id}/members", bob)
    assert carol.user_id not in {e["state_key"] for e in body["chunk"]}
    assert await messages(server, bob, room_id) == ["while bob was here"]


async def test_departed_member_of_joined_room_in_sync_leave_section(server: Server):
    alice, bob = await server.register("alice"), await server.register("bob")
    room_id = await make_room(server.hs, alice.user_id, history_visibility="joined")
    await send(server, alice, room_id, "secret")
    await act(server, bob, room_id, "join")
    await send(server, alice, room_id, "seen")
    await act(server, bob, room_id, "leave")
    await send(server, alice, room_id, "later")
    body = await sync(server, bob, filter=json.dumps({"room": {"include_leave": True}}))
    timeline = body["rooms"]["leave"][room_id]["timeline"]["events"]
    assert bodies(timeline) == ["seen"]
    assert timeline[-1]["type"] == "m.room.member"
    assert timeline[-1]["content"]["membership"] == "leave"
