"""``POST /user_directory/search``: who a searcher finds (shared rooms, publicly viewable rooms,
never the deactivated), word-prefix matching and ranking, the directory following joins, leaves,
room publicity and profile changes, remote users' public names only, the rebuild, bad bodies."""

from __future__ import annotations

from typing import Any

from homeserver.accounts.user_directory import UserDirectoryService
from homeserver.app import Homeserver
from homeserver.config.user_directory import UserDirectoryConfig
from homeserver.events.draft import EventDraft
from tests.builders import invite, join, leave, make_room
from tests.harness import TestServer, TestUser


async def find(server: TestServer, user: TestUser, term: str, **body: Any) -> list[str]:
    status, answer = await server.call(
        "POST", "/user_directory/search", user, json={"search_term": term, **body}
    )
    assert status == 200, answer
    return [r["user_id"] for r in answer["results"]]


async def set_name(server: TestServer, user: TestUser, name: str) -> None:
    status, _ = await server.call(
        "PUT", f"/profile/{user.user_id}/displayname", user, json={"displayname": name}
    )
    assert status == 200


async def test_who_a_searcher_finds(server: TestServer) -> None:
    hs = server.hs
    alice, bob, carol, dave = [await server.register(n) for n in ("alice", "bob", "carol", "dave")]
    private = await make_room(hs, alice.user_id, join_rule="invite")
    await invite(hs, private, alice.user_id, bob.user_id)
    await join(hs, private, bob.user_id)
    public = await make_room(hs, carol.user_id, join_rule="public")
    await set_name(server, bob, "Robert Smith")
    await set_name(server, dave, "Dave Nobody")

    # Bob shares a room with Alice, Carol is in a public room; Dave in none, and Alice is not
    # shown herself (she shares only a private room).
    assert await find(server, alice, "bob") == [bob.user_id]
    assert await find(server, alice, "carol") == [carol.user_id]
    assert await find(server, alice, "dave") == []
    assert await find(server, alice, "alice") == []
    # Any word's prefix, case-insensitively, every word must match; not the middle of a word.
    assert await find(server, alice, "rob") == [bob.user_id]
    assert await find(server, alice, "SMI rob") == [bob.user_id]
    assert await find(server, alice, "obert") == []
    assert await find(server, alice, "robert jones") == []
    assert await find(server, alice, "@bob:test.example") == [bob.user_id]
    assert await find(server, alice, "test.example") == [bob.user_id, carol.user_id]
    _, answer = await server.call(
        "POST", "/user_directory/search", alice, json={"search_term": "robert"}
    )
    assert answer == {
        "limited": False,
        "results": [{"user_id": bob.user_id, "display_name": "Robert Smith"}],
    }
    _, answer = await server.call(
        "POST", "/user_directory/search", alice, json={"search_term": "test", "limit": 1}
    )
    assert answer["limited"] is True and len(answer["results"]) == 1
    # Bob sees Alice (shared room) and Carol (public room), Carol sees only Carol's own room.
    assert await find(server, bob, "a") == [alice.user_id]
    assert await find(server, carol, "test") == [carol.user_id]

    # Profile changes, joins, leaves and publicity follow at once.
    await set_name(server, carol, "Zed")
    assert await find(server, alice, "zed") == [carol.user_id]
    await join(hs, public, dave.user_id)
    assert await find(server, alice, "dave") == [dave.user_id]
    await leave(hs, private, bob.user_id)
    assert await find(server, alice, "bob") == []
    await hs.sender.send(
        public, EventDraft("m.room.join_rules", carol.user_id, {"join_rule": "invite"}, "")
    )
    assert await find(server, alice, "dave") == []
    await hs.sender.send(
        public,
        EventDraft(
            "m.room.history_visibility",
            carol.user_id,
            {"history_visibility": "world_readable"},
            "",
        ),
    )
    assert await find(server, alice, "dave") == [dave.user_id]
    assert await hs.store.users.deactivate_user(dave.user_id)
    assert await find(server, alice, "dave") == []

    # search_all_users: everyone but the searcher and the deactivated.
    every = UserDirectoryService(hs.store, UserDirectoryConfig(search_all_users=True))
    body = await every.search(alice.user_id, "test", 10)
    assert [r["user_id"] for r in body["results"]] == [bob.user_id, carol.user_id]
    off = UserDirectoryService(hs.store, UserDirectoryConfig(enabled=False))
    assert await off.search(alice.user_id, "bob", 10) == {"limited": False, "results": []}

    status, answer = await server.call("POST", "/user_directory/search", json={"search_term": "a"})
    assert status == 401 and answer["errcode"] == "M_MISSING_TOKEN"


async def test_remote_users_and_rebuild(hs: Homeserver) -> None:
    # Once after migration 021 (start_homeserver asks; this server was built without it).
    assert await hs.store.user_directory.rebuild_if_needed()
    assert not await hs.store.user_directory.rebuild_if_needed()
    alice, bob = "@alice:test.example", "@bob:test.example"
    for user_id in (alice, bob):
        await hs.store.users.create_user(user_id, None, created_ts=hs.clock())
    await hs.store.profiles.set_field(bob, "displayname", "Bobby")
    public = await make_room(hs, alice, join_rule="public")
    private = await make_room(hs, alice, join_rule="invite")
    remote, secret = "@rem:remote.example", "@secret:remote.example"
    member = {"membership": "join", "displayname": "Remy", "avatar_url": "mxc://r/a"}
    await hs.sender.send(public, EventDraft("m.room.member", remote, member, remote))
    # A name PostgreSQL text cannot hold is shown as none (and fails no persist).
    odd = "@odd:remote.example"
    nul = {"membership": "join", "displayname": "Odd\x00"}
    await hs.sender.send(public, EventDraft("m.room.member", odd, nul, odd))
    await hs.sender.send(
        private, EventDraft("m.room.member", alice, {"membership": "invite"}, secret)
    )
    nickname = {"membership": "join", "displayname": "Private Nick\x00"}
    await hs.sender.send(private, EventDraft("m.room.member", secret, nickname, secret))
    service = UserDirectoryService(hs.store, UserDirectoryConfig())

    async def search(term: str) -> list[dict[str, str]]:
        return (await service.search(alice, term, 10))["results"]

    # The public room's name and avatar are shown; a private room's nickname never is.
    assert await search("remy") == [
        {"user_id": remote, "display_name": "Remy", "avatar_url": "mxc://r/a"}
    ]
    assert await search("nick") == []
    assert await search("secret") == [{"user_id": secret}]
    assert await search("odd") == [{"user_id": odd}]
    before = [await search(t) for t in ("remote", "bob", "test")]
    # Bob shares no room with Alice; Alice finds herself through the public room (as Synapse).
    assert [[r["user_id"] for r in found] for found in before] == [
        [remote, odd, secret],  # named and with an avatar first
        [],
        [alice],
    ]
    async with hs.store.db.transaction("forget_directory") as txn:
        await txn.execute("DELETE FROM user_directory")
    await hs.store.user_directory.rebuild()
    assert [await search(t) for t in ("remote", "bob", "test")] == before
    all_users = UserDirectoryService(hs.store, UserDirectoryConfig(search_all_users=True))
    assert (await all_users.search(alice, "bob", 10))["results"] == [
        {"user_id": bob, "display_name": "Bobby"}
    ]
    local_only = UserDirectoryService(
        hs.store,
        UserDirectoryConfig(search_all_users=True, exclude_remote_users=True),
    )
    assert (await local_only.search(alice, "re", 10))["results"] == []
    # A remote user is forgotten once joined to no room we know.
    await hs.sender.send(
        public, EventDraft("m.room.member", remote, {"membership": "leave"}, remote)
    )
    assert await search("remy") == []
    assert (await all_users.search(alice, "remy", 10))["results"] == []


async def test_bad_bodies(server: TestServer) -> None:
    alice = await server.register("alice")
    cases: list[tuple[Any, str]] = [
        ({}, "M_MISSING_PARAM"),
        ({"search_term": 5}, "M_INVALID_PARAM"),
        ({"search_term": None}, "M_INVALID_PARAM"),
        ({"search_term": "a", "limit": "5"}, "M_INVALID_PARAM"),
        ({"search_term": "a", "limit": True}, "M_INVALID_PARAM"),
        ({"search_term": "a", "limit": 1.5}, "M_INVALID_PARAM"),
        ({"search_term": " ".join(f"w{i}" for i in range(40))}, "M_INVALID_PARAM"),
        (["search_term"], "M_BAD_JSON"),
    ]
    for body, errcode in cases:
        status, answer = await server.call("POST", "/user_directory/search", alice, json=body)
        assert status == 400 and answer["errcode"] == errcode, (body, answer)
    # Odd but harmless terms find nothing and fail nothing.
    for term in ("", "%", "_", "\\", "\x00", "a" * 100_000, "%_%", "' OR 1=1 --"):
        assert await find(server, alice, term, limit=-5) == []
        assert await find(server, alice, term, limit=10**30) == []
