"""``/profile``: reading, setting one's own fields, limits, and the new join events that carry
a changed profile into every joined room."""

from __future__ import annotations

import secrets

import pytest

from homeserver.app import Homeserver
from homeserver.events.draft import EventDraft
from homeserver.room_versions import get_room_version
from homeserver.rooms.sender import BatchBuilder
from homeserver.storage import NewRoom
from tests.harness import TestServer, TestUser


async def make_room(hs: Homeserver, creator: str, version: str = "12") -> str:
    """A public room with ``creator`` joined, persisted directly (independent of createRoom)."""
    room_version = get_room_version(version)
    room_id = None
    if not room_version.room_id_is_create_event_hash:
        room_id = f"!{secrets.token_hex(8)}:test.example"
    batch = BatchBuilder(room_version, hs.signer, room_id, clock=hs.clock)
    batch.add(
        EventDraft("m.room.create", creator, {"room_version": version, "creator": creator}, "")
    )
    batch.add(EventDraft("m.room.member", creator, {"membership": "join"}, creator))
    users = {} if room_version.creators_have_infinite_power else {creator: 100}
    batch.add(EventDraft("m.room.power_levels", creator, {"users": users}, ""))
    batch.add(EventDraft("m.room.join_rules", creator, {"join_rule": "public"}, ""))
    assert batch.room_id is not None
    await hs.store.persist_events(
        [(e, None) for e in batch.events], new_room=NewRoom(batch.room_id, version, creator, 1)
    )
    return batch.room_id


async def member_content(hs: Homeserver, room_id: str, user_id: str) -> dict[str, object]:
    event = await hs.store.state.get_current_state_event(room_id, "m.room.member", user_id)
    assert event is not None
    return event.content


async def test_get_profile(server: TestServer) -> None:
    user = await server.register("alice")
    status, body = await server.call("GET", f"/profile/{user.user_id}")
    assert status == 200 and body == {}  # made straight in the store: no profile yet
    await server.call(
        "PUT", f"/profile/{user.user_id}/displayname", user, json={"displayname": "A"}
    )
    await server.call(
        "PUT", f"/profile/{user.user_id}/avatar_url", user, json={"avatar_url": "mxc://x/y"}
    )
    status, body = await server.call("GET", f"/profile/{user.user_id}")
    assert status == 200 and body == {"displayname": "A", "avatar_url": "mxc://x/y"}
    status, body = await server.call("GET", f"/profile/{user.user_id}/displayname")
    assert status == 200 and body == {"displayname": "A"}
    status, body = await server.call("GET", f"/profile/{user.user_id}/avatar_url", user)
    assert status == 200 and body == {"avatar_url": "mxc://x/y"}
    assert await server.hs.profiles.get_profile(user.user_id) == body | {"displayname": "A"}


async def test_clearing_a_field(server: TestServer) -> None:
    user = await server.register("alice")
    path = f"/profile/{user.user_id}/displayname"
    await server.call("PUT", path, user, json={"displayname": "A"})
    status, _ = await server.call("PUT", path, user, json={"displayname": ""})
    assert status == 200
    status, body = await server.call("GET", path)
    assert status == 200 and body == {}
    assert await server.hs.profiles.get_profile(user.user_id) == {}


async def test_unknown_users(server: TestServer) -> None:
    for user_id in ("@nobody:test.example", "@someone:elsewhere.example"):
        for suffix in ("", "/displayname", "/avatar_url"):
            status, body = await server.call("GET", f"/profile/{user_id}{suffix}")
            assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await server.call("GET", "/profile/not-a-user-id")
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    assert await server.hs.profiles.get_profile("@someone:elsewhere.example") == {}


async def test_only_your_own_profile(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    status, body = await server.call(
        "PUT", f"/profile/{bob.user_id}/displayname", alice, json={"displayname": "pwned"}
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    status, body = await server.call(
        "PUT", "/profile/@x:elsewhere.example/displayname", alice, json={"displayname": "x"}
    )
    assert status == 400
    status, body = await server.call(
        "PUT", f"/profile/{alice.user_id}/displayname", json={"displayname": "x"}
    )
    assert status == 401 and body["errcode"] == "M_MISSING_TOKEN"
    admin = await server.register("root", admin=True)
    status, _ = await server.call(
        "PUT", f"/profile/{bob.user_id}/displayname", admin, json={"displayname": "Bobby"}
    )
    assert status == 200
    assert await server.hs.profiles.get_profile(bob.user_id) == {"displayname": "Bobby"}


@pytest.mark.parametrize(
    ("field", "body", "errcode"),
    [
        ("displayname", {}, "M_MISSING_PARAM"),
        ("displayname", {"displayname": None}, "M_INVALID_PARAM"),
        ("displayname", {"displayname": 3}, "M_INVALID_PARAM"),
        ("displayname", {"displayname": "x" * 257}, "M_INVALID_PARAM"),
        ("avatar_url", {"avatar_url": ["mxc://a/b"]}, "M_INVALID_PARAM"),
        ("avatar_url", {"avatar_url": "mxc://a/" + "b" * 1000}, "M_INVALID_PARAM"),
    ],
)
async def test_bad_values(server: TestServer, field: str, body: object, errcode: str) -> None:
    user = await server.register("alice")
    status, answer = await server.call("PUT", f"/profile/{user.user_id}/{field}", user, json=body)
    assert status == 400 and answer["errcode"] == errcode, answer
    assert await server.hs.profiles.get_profile(user.user_id) == {}


async def test_limits_are_inclusive(server: TestServer) -> None:
    user = await server.register("alice")
    name = "x" * 256
    status, _ = await server.call(
        "PUT", f"/profile/{user.user_id}/displayname", user, json={"displayname": name}
    )
    assert status == 200


@pytest.mark.parametrize("version", ["10", "12"])
async def test_change_is_reflected_in_joined_rooms(server: TestServer, version: str) -> None:
    hs = server.hs
    alice: TestUser = await server.register("alice")
    bob: TestUser = await server.register("bob")
    joined = await make_room(hs, alice.user_id, version)
    other = await make_room(hs, bob.user_id, version)  # alice is not in this one
    left = await make_room(hs, bob.user_id, version)
    await hs.sender.send(
        left, EventDraft("m.room.member", alice.user_id, {"membership": "join"}, alice.user_id)
    )
    await hs.sender.send(
        left, EventDraft("m.room.member", alice.user_id, {"membership": "leave"}, alice.user_id)
    )
    before_other = await hs.store.state.get_current_state_ids(other)
    before_left = await hs.store.state.get_current_state_ids(left)

    status, _ = await server.call(
        "PUT", f"/profile/{alice.user_id}/displayname", alice, json={"displayname": "Alice"}
    )
    assert status == 200
    assert await member_content(hs, joined, alice.user_id) == {
        "membership": "join",
        "displayname": "Alice",
    }
    status, _ = await server.call(
        "PUT", f"/profile/{alice.user_id}/avatar_url", alice, json={"avatar_url": "mxc://a/b"}
    )
    assert status == 200
    assert await member_content(hs, joined, alice.user_id) == {
        "membership": "join",
        "displayname": "Alice",
        "avatar_url": "mxc://a/b",
    }
    assert await hs.store.state.get_current_state_ids(other) == before_other
    assert await hs.store.state.get_current_state_ids(left) == before_left


async def test_a_failing_room_does_not_fail_the_change(
    server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hs = server.hs
    alice = await server.register("alice")
    first = await make_room(hs, alice.user_id)
    second = await make_room(hs, alice.user_id)
    real_send = hs.sender.send

    async def flaky_send(room_id: str, draft: EventDraft):  # type: ignore[no-untyped-def]
        if room_id == first:
            raise RuntimeError("boom")
        return await real_send(room_id, draft)

    monkeypatch.setattr(hs.sender, "send", flaky_send)
    status, _ = await server.call(
        "PUT", f"/profile/{alice.user_id}/displayname", alice, json={"displayname": "Al"}
    )
    assert status == 200
    assert (await member_content(hs, second, alice.user_id)).get("displayname") == "Al"
    assert "displayname" not in await member_content(hs, first, alice.user_id)
