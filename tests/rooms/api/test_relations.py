"""Relations on both engines: /relations (filters, pagination, recurse), /threads, the bundled
aggregations (edit, thread summary, references) on /event, /messages, /context and /sync, a
redacted edit or reply dropping out, only what the reader may see, and bad input refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.config import HomeserverConfig
from homeserver.events.relations import relation_of
from tests.builders import generous_config, join, leave, make_room
from tests.harness import TestServer as Server
from tests.harness import TestUser

V1 = "/_matrix/client/v1"


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


class Room:
    def __init__(self, server: Server, room_id: str) -> None:
        self.server = server
        self.room_id = room_id
        self.txn = 0

    async def send(self, user: TestUser, content: dict[str, Any]) -> str:
        self.txn += 1
        status, body = await self.server.call(
            "PUT", f"/rooms/{self.room_id}/send/m.room.message/t{self.txn}", user, json=content
        )
        assert status == 200, body
        return str(body["event_id"])

    async def say(self, user: TestUser, text: str, relates_to: dict[str, Any] | None = None) -> str:
        content: dict[str, Any] = {"msgtype": "m.text", "body": text}
        if relates_to is not None:
            content["m.relates_to"] = relates_to
        return await self.send(user, content)

    async def reply(self, user: TestUser, root: str, text: str) -> str:
        return await self.say(user, text, {"rel_type": "m.thread", "event_id": root})

    async def edit(self, user: TestUser, target: str, text: str) -> str:
        return await self.send(
            user,
            {
                "msgtype": "m.text",
                "body": f"* {text}",
                "m.new_content": {"msgtype": "m.text", "body": text},
                "m.relates_to": {"rel_type": "m.replace", "event_id": target},
            },
        )

    async def redact(self, user: TestUser, target: str) -> None:
        self.txn += 1
        status, body = await self.server.call(
            "PUT",
            f"/rooms/{self.room_id}/redact/{quote(target, safe='')}/r{self.txn}",
            user,
            json={},
        )
        assert status == 200, body

    async def get(self, user: TestUser, path: str, **params: str) -> tuple[int, Any]:
        return await self.server.call(
            "GET", f"{V1}/rooms/{self.room_id}{path}", user, params=params or None
        )

    async def relations(self, user: TestUser, event_id: str, tail: str = "", **params: str) -> Any:
        status, body = await self.get(
            user, f"/relations/{quote(event_id, safe='')}{tail}", **params
        )
        assert status == 200, body
        return body

    async def event(self, user: TestUser, event_id: str) -> dict[str, Any]:
        status, body = await self.server.call(
            "GET", f"/rooms/{self.room_id}/event/{quote(event_id, safe='')}", user
        )
        assert status == 200, body
        return dict(body)


def ids(chunk: list[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in chunk]


def bundle(event: dict[str, Any]) -> dict[str, Any]:
    return dict(event.get("unsigned", {}).get("m.relations", {}))


def test_relation_of_reads_only_well_formed_relations() -> None:
    assert relation_of({"m.relates_to": {"rel_type": "m.thread", "event_id": "$a"}}) is not None
    for content in (
        {},
        {"m.relates_to": "x"},
        {"m.relates_to": {"m.in_reply_to": {"event_id": "$a"}}},
        {"m.relates_to": {"rel_type": "m.thread", "event_id": 1}},
        {"m.relates_to": {"rel_type": "m.thread\x00", "event_id": "$a"}},
        {"m.relates_to": {"rel_type": "x" * 300, "event_id": "$a"}},
    ):
        assert relation_of(content) is None, content


async def test_relations_threads_and_bundles(server: Server) -> None:
    alice, bob, carol = [await server.register(n) for n in ("alice", "bob", "carol")]
    room = Room(server, await make_room(server.hs, alice.user_id))
    for user in (bob, carol):
        await join(server.hs, room.room_id, user.user_id)
    root = await room.say(alice, "root")
    first_edit = await room.edit(alice, root, "root v2")
    latest_edit = await room.edit(alice, root, "root v3")
    hijack = await room.edit(bob, root, "hijack")  # not the sender's: never the applicable edit
    replies = [
        await room.reply(bob, root, "r1"),
        await room.reply(alice, root, "r2"),
        await room.reply(bob, root, "r3"),
    ]
    reply_edit = await room.edit(bob, replies[-1], "r3 edited")
    reference = await room.say(carol, "see above", {"rel_type": "m.reference", "event_id": root})
    nested = await room.say(
        carol, "ref of a reply", {"rel_type": "m.reference", "event_id": replies[0]}
    )

    # The bundle, as alice sees it on /event: the latest edit by the sender, whole; the
    # original content untouched; the thread summary with its latest reply (and that reply's
    # own edit); the references.
    event = await room.event(alice, root)
    assert event["content"]["body"] == "root"
    relations = bundle(event)
    assert relations["m.replace"]["event_id"] == latest_edit
    thread = relations["m.thread"]
    assert thread["count"] == 3 and thread["current_user_participated"] is True
    assert thread["latest_event"]["event_id"] == replies[-1]
    assert bundle(thread["latest_event"])["m.replace"]["event_id"] == reply_edit
    assert relations["m.reference"] == {"chunk": [{"event_id": reference}]}
    # carol neither sent the root nor replied; an edit carries no bundle of its own.
    assert bundle(await room.event(carol, root))["m.thread"]["current_user_participated"] is False
    assert bundle(await room.event(alice, latest_edit)) == {}

    # The same bundle on /messages, /context and /sync.
    status, page = await server.call(
        "GET", f"/rooms/{room.room_id}/messages", alice, params={"limit": "50"}
    )
    assert status == 200
    by_id = {e["event_id"]: e for e in page["chunk"]}
    assert bundle(by_id[root])["m.thread"]["count"] == 3
    status, context = await server.call(
        "GET", f"/rooms/{room.room_id}/context/{quote(root, safe='')}", alice
    )
    assert status == 200 and bundle(context["event"])["m.replace"]["event_id"] == latest_edit
    status, synced = await server.call(
        "GET", "/sync", alice, params={"filter": '{"room":{"timeline":{"limit":50}}}'}
    )
    assert status == 200
    timeline = synced["rooms"]["join"][room.room_id]["timeline"]["events"]
    synced_root = next(e for e in timeline if e["event_id"] == root)
    assert bundle(synced_root)["m.thread"]["latest_event"]["event_id"] == replies[-1]

    # /relations: newest first, filtered by relation type and event type, paginated.
    everything = await room.relations(alice, root, limit="50")
    assert ids(everything["chunk"]) == [reference, *replies[::-1], hijack, latest_edit, first_edit]
    assert "next_batch" not in everything
    in_thread = await room.relations(alice, root, "/m.thread")
    assert ids(in_thread["chunk"]) == replies[::-1]
    assert (
        ids((await room.relations(alice, root, "/m.thread/m.room.message"))["chunk"])
        == (replies[::-1])
    )
    assert (await room.relations(alice, root, "/m.thread/m.room.topic"))["chunk"] == []
    first = await room.relations(alice, root, "/m.thread", limit="2")
    assert ids(first["chunk"]) == replies[:0:-1]
    second = await room.relations(
        alice, root, "/m.thread", limit="2", **{"from": first["next_batch"]}
    )
    assert ids(second["chunk"]) == replies[:1] and "next_batch" not in second
    assert second["prev_batch"] == first["next_batch"]
    forwards = await room.relations(alice, root, "/m.thread", dir="f")
    assert ids(forwards["chunk"]) == replies
    # recurse follows relations of relations (carol's reference to the first reply).
    flat = await room.relations(alice, root, "/m.reference", limit="50")
    assert ids(flat["chunk"]) == [reference]
    deep = await room.relations(alice, root, "/m.reference", recurse="true", limit="50")
    assert ids(deep["chunk"]) == [nested, reference] and deep["recursion_depth"] == 3

    # /threads: the room's thread roots with their summaries; "participated" per user.
    status, threads = await room.get(alice, "/threads")
    assert status == 200 and ids(threads["chunk"]) == [root]
    assert bundle(threads["chunk"][0])["m.thread"]["count"] == 3
    status, mine = await room.get(carol, "/threads", include="participated")
    assert status == 200 and mine["chunk"] == []
    second_root = await room.say(carol, "another")
    await room.reply(carol, second_root, "mine")
    status, threads = await room.get(carol, "/threads", limit="1")
    assert ids(threads["chunk"]) == [second_root]
    status, rest = await room.get(carol, "/threads", limit="1", **{"from": threads["next_batch"]})
    assert ids(rest["chunk"]) == [root] and "next_batch" not in rest
    status, mine = await room.get(carol, "/threads", include="participated")
    assert ids(mine["chunk"]) == [second_root]

    # A redacted reply or edit drops out of every aggregation and listing.
    await room.redact(bob, replies[-1])
    await room.redact(alice, latest_edit)
    relations = bundle(await room.event(alice, root))
    assert relations["m.replace"]["event_id"] == first_edit
    assert relations["m.thread"]["count"] == 2
    assert relations["m.thread"]["latest_event"]["event_id"] == replies[1]
    assert ids((await room.relations(alice, root, "/m.thread"))["chunk"]) == replies[1::-1]


async def test_relations_show_only_what_the_reader_may_see(server: Server) -> None:
    alice, bob, carol = [await server.register(n) for n in ("alice", "bob", "carol")]
    room = Room(server, await make_room(server.hs, alice.user_id, history_visibility="joined"))
    await join(server.hs, room.room_id, bob.user_id)
    early = await room.say(alice, "before carol")
    early_reply = await room.reply(bob, early, "early reply")
    await room.edit(alice, early, "before carol, edited")
    await join(server.hs, room.room_id, carol.user_id)
    # carol joined late: the earlier root, its replies and edits are not hers to see.
    status, body = await room.get(carol, f"/relations/{quote(early, safe='')}")
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    late_reply = await room.reply(bob, early, "reply after carol joined")
    status, threads = await room.get(carol, "/threads")
    assert status == 200 and threads["chunk"] == []
    # A root she saw: replies before she left are shown, those after are not.
    root = await room.say(alice, "carol is here")
    seen_reply = await room.reply(bob, root, "while carol is here")
    await leave(server.hs, room.room_id, carol.user_id)
    await room.reply(bob, root, "after carol left")
    await room.edit(alice, root, "edited after carol left")
    assert ids((await room.relations(carol, root, "/m.thread"))["chunk"]) == [seen_reply]
    relations = bundle(await room.event(carol, root))
    assert relations["m.thread"]["latest_event"]["event_id"] == seen_reply
    assert "m.replace" not in relations
    # bob saw everything.
    thread = bundle(await room.event(bob, early))["m.thread"]
    assert thread["latest_event"]["event_id"] == late_reply and thread["count"] == 2
    assert ids((await room.relations(bob, early, "/m.thread"))["chunk"]) == [
        late_reply,
        early_reply,
    ]
    # A stranger reads nothing of the room.
    dave = await server.register("dave")
    status, body = await room.get(dave, f"/relations/{quote(root, safe='')}")
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    status, body = await room.get(dave, "/threads")
    assert status == 403


async def test_relations_bad_input(server: Server) -> None:
    alice = await server.register("alice")
    room = Room(server, await make_room(server.hs, alice.user_id))
    root = await room.say(alice, "root")
    other = Room(server, await make_room(server.hs, alice.user_id))
    elsewhere = await other.say(alice, "other room")
    path = f"/relations/{quote(root, safe='')}"
    for params, errcode in (
        ({"dir": "x"}, "M_INVALID_PARAM"),
        ({"recurse": "maybe"}, "M_INVALID_PARAM"),
        ({"limit": "many"}, "M_INVALID_PARAM"),
        ({"from": "garbage"}, "M_INVALID_PARAM"),
        ({"to": "s-1"}, "M_INVALID_PARAM"),
    ):
        status, body = await room.get(alice, path, **params)
        assert status == 400 and body["errcode"] == errcode, (params, body)
    for tail in ("/" + "x" * 300, "/m.thread/" + quote("a\x00b", safe="")):
        status, body = await room.get(alice, path + tail)
        assert status == 400 and body["errcode"] == "M_INVALID_PARAM", body
    status, body = await room.get(alice, "/threads", include="bogus")
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    status, body = await room.get(alice, f"/relations/{quote(elsewhere, safe='')}")
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await room.get(alice, "/relations/%24nope")
    assert status == 404
    status, body = await server.call("GET", f"{V1}/rooms/nope/threads", alice)
    assert status == 400
    status, body = await server.call("GET", f"{V1}/rooms/{room.room_id}/threads")
    assert status == 401
    # Sending: a relation's parent must be an event of the room; no thread from a relation.
    edit = await room.edit(alice, root, "edited")
    before = await server.hs.store.events.get_max_stream_ordering()
    for parent in (elsewhere, "$unknown", edit):
        txn = f"bad{parent[-3:]}"
        status, body = await server.call(
            "PUT",
            f"/rooms/{room.room_id}/send/m.room.message/{txn}",
            alice,
            json={"body": "x", "m.relates_to": {"rel_type": "m.thread", "event_id": parent}},
        )
        assert status == 400 and body["errcode"] == "M_UNKNOWN", (parent, body)
    # A stranger is refused by the room, not told whether the parent exists.
    eve = await server.register("eve")
    status, body = await server.call(
        "PUT",
        f"/rooms/{room.room_id}/send/m.room.message/e1",
        eve,
        json={"body": "x", "m.relates_to": {"rel_type": "m.thread", "event_id": "$unknown"}},
    )
    assert status == 403
    assert await server.hs.store.events.get_max_stream_ordering() == before
    # A relation holding NUL is sent and stored as an ordinary event, with no relation row.
    await room.say(alice, "odd", {"rel_type": "m.thread\x00", "event_id": root})
    assert ids((await room.relations(alice, root))["chunk"]) == [edit]
    # /threads is served, so v1.4 is advertised.
    status, versions = await server.call("GET", "/_matrix/client/versions")
    assert "v1.4" in versions["versions"]
