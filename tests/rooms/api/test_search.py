"""POST /search on both engines: what is found and in which order, pages, context, groups,
count; only what the searcher may see (a late joiner, a departed member, a redaction); bad
bodies refused with 400 and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.config import HomeserverConfig
from homeserver.events.draft import EventDraft
from homeserver.storage.migrate import load_migrations, split_statements
from tests.builders import generous_config, join, leave, make_room, say
from tests.harness import TestServer as Server
from tests.harness import TestUser


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


def body(term: str, **room_events: Any) -> dict[str, Any]:
    return {"search_categories": {"room_events": {"search_term": term, **room_events}}}


async def search(
    server: Server, user: TestUser, term: str, *, next_batch: str | None = None, **options: Any
) -> dict[str, Any]:
    params = None if next_batch is None else {"next_batch": next_batch}
    status, answer = await server.call(
        "POST", "/search", user, json=body(term, **options), params=params
    )
    assert status == 200, answer
    return answer["search_categories"]["room_events"]


def ids(found: dict[str, Any]) -> list[str]:
    return [r["result"]["event_id"] for r in found["results"]]


async def test_found_ranked_and_recent_with_filters_context_and_groups(server: Server) -> None:
    hs = server.hs
    alice = await server.register("alice")
    bob = await server.register("bob")
    room = await make_room(hs, alice.user_id, name="Cats and dogs")
    other = await make_room(hs, alice.user_id)
    await join(hs, room, bob.user_id)
    first = await say(hs, room, alice.user_id, "the quick brown fox")
    second = await say(hs, room, bob.user_id, "foxes are quick, quick, quick")
    unrelated = await say(hs, room, alice.user_id, "nothing to see")
    elsewhere = await say(hs, other, alice.user_id, "a fox elsewhere")
    await hs.sender.send(
        room, EventDraft("m.room.topic", alice.user_id, {"topic": "all about foxes"}, "")
    )

    recent = await search(server, alice, "QUICK", order_by="recent")
    assert ids(recent) == [second.event_id, first.event_id]
    assert recent["count"] == 2
    assert "next_batch" not in recent
    assert "quick" in recent["highlights"]
    assert recent["results"][0]["result"]["content"]["body"].startswith("foxes")

    # Prefix matching and stemming: "fox" finds "foxes"; rank puts the denser match first.
    ranked = await search(server, alice, "quick fox")
    assert ids(ranked) == [second.event_id, first.event_id]
    assert ranked["results"][0]["rank"] >= ranked["results"][1]["rank"]

    everywhere = await search(server, alice, "fox", keys=["content.body"])
    assert set(ids(everywhere)) == {first.event_id, second.event_id, elsewhere.event_id}
    topic = await search(server, alice, "fox", keys=["content.topic"])
    assert [r["result"]["type"] for r in topic["results"]] == ["m.room.topic"]
    named = await search(server, alice, "dogs", keys=["content.name"])
    assert [r["result"]["type"] for r in named["results"]] == ["m.room.name"]
    # bob is not in `other`: its messages are not his to find.
    assert set(ids(await search(server, bob, "fox", keys=["content.body"]))) == {
        first.event_id,
        second.event_id,
    }

    only_bob = await search(server, alice, "fox", filter={"senders": [bob.user_id]})
    assert ids(only_bob) == [second.event_id]
    not_room = await search(
        server, alice, "fox", keys=["content.body"], filter={"not_rooms": [room]}
    )
    assert ids(not_room) == [elsewhere.event_id]
    typed = await search(server, alice, "fox", filter={"types": ["m.room.t*"]})
    assert [r["result"]["type"] for r in typed["results"]] == ["m.room.topic"]
    assert await search(server, alice, "!!! ???") == {"results": [], "count": 0, "highlights": []}

    grouped = await search(
        server,
        alice,
        "fox",
        keys=["content.body"],
        order_by="recent",
        groupings={"group_by": [{"key": "room_id"}, {"key": "sender"}]},
        event_context={"before_limit": 1, "after_limit": 1, "include_profile": True},
        include_state=True,
    )
    assert ids(grouped) == [elsewhere.event_id, second.event_id, first.event_id]
    groups = grouped["groups"]
    assert groups["room_id"][room]["results"] == [second.event_id, first.event_id]
    assert groups["room_id"][other] == {"results": [elsewhere.event_id], "order": 1}
    assert groups["sender"][bob.user_id]["results"] == [second.event_id]
    context = grouped["results"][1]["context"]
    assert [e["event_id"] for e in context["events_before"]] == [first.event_id]
    assert [e["event_id"] for e in context["events_after"]] == [unrelated.event_id]
    assert context["start"] and context["end"]
    assert set(context["profile_info"]) == {alice.user_id, bob.user_id}
    state_types = {e["type"] for e in grouped["state"][room]}
    assert {"m.room.create", "m.room.member", "m.room.topic"} <= state_types


async def test_pages_cover_every_match_once(server: Server) -> None:
    hs = server.hs
    alice = await server.register("alice")
    room = await make_room(hs, alice.user_id)
    sent = {(await say(hs, room, alice.user_id, f"page test {i}")).event_id for i in range(23)}
    for order_by in ("recent", "rank"):
        await _page_through(server, alice, sent, order_by)


async def _page_through(server: Server, alice: TestUser, sent: set[str], order_by: str) -> None:
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        found = await search(
            server, alice, "page", next_batch=token, order_by=order_by, filter={"limit": 10}
        )
        assert found["count"] == 23
        seen += ids(found)
        pages += 1
        token = found.get("next_batch")
        if token is None:
            break
    assert pages == 3
    assert len(seen) == 23 and set(seen) == sent
    # A token from the other ordering, or none of ours, is refused.
    other = "rank" if order_by == "recent" else "recent"
    for bad in (f"{other}_1", "nonsense", f"{order_by}_-1", f"{order_by}_1e3"):
        status, answer = await server.call(
            "POST",
            "/search",
            alice,
            json=body("page", order_by=order_by),
            params={"next_batch": bad},
        )
        assert (status, answer["errcode"]) == (400, "M_INVALID_PARAM"), bad


async def test_late_joiner_departed_member_and_redaction(server: Server) -> None:
    hs = server.hs
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    room = await make_room(hs, alice.user_id, history_visibility="joined")
    before = [await say(hs, room, alice.user_id, f"secret plan {i}") for i in range(3)]
    await join(hs, room, bob.user_id)
    after = await say(hs, room, alice.user_id, "secret plan revealed")
    shared = await make_room(hs, alice.user_id, history_visibility="shared")
    old = await say(hs, shared, alice.user_id, "secret from the shared past")
    await join(hs, shared, bob.user_id)

    found = await search(server, bob, "secret", order_by="recent")
    assert ids(found) == [old.event_id, after.event_id]
    assert found["count"] == 2
    ranked = await search(server, bob, "secret plan")
    assert ids(ranked) == [after.event_id]
    assert ranked["count"] == 1
    # alice saw all of it.
    assert len(ids(await search(server, alice, "secret"))) == 5
    # The context of a late joiner's result holds nothing from before he joined either.
    context = await search(server, bob, "revealed", event_context={"before_limit": 5})
    before_ids = {e["event_id"] for e in context["results"][0]["context"]["events_before"]}
    assert before_ids.isdisjoint(e.event_id for e in before)
    # Carol is in no room: nothing at all; bob after leaving: not that room any more.
    assert await search(server, carol, "secret") == {
        "results": [],
        "count": 0,
        "highlights": ["secret"],
    }
    await leave(hs, room, bob.user_id)
    assert ids(await search(server, bob, "secret", order_by="recent")) == [old.event_id]

    # A redacted message is no longer found by its old text.
    status, answer = await server.call(
        "PUT",
        f"/rooms/{room}/redact/{quote(after.event_id, safe='')}/r1",
        alice,
        json={},
    )
    assert status == 200, answer
    assert after.event_id not in ids(await search(server, alice, "revealed"))
    assert await search(server, alice, "revealed") == {
        "results": [],
        "count": 0,
        "highlights": ["revealed"],
    }


BAD_BODIES: list[tuple[Any, str]] = [
    ([], "M_BAD_JSON"),
    ({}, "M_BAD_JSON"),
    ({"search_categories": []}, "M_BAD_JSON"),
    ({"search_categories": {"room_events": "x"}}, "M_BAD_JSON"),
    (body(None), "M_BAD_JSON"),  # type: ignore[arg-type]
    (body(7), "M_BAD_JSON"),  # type: ignore[arg-type]
    (body("x" * 1001), "M_INVALID_PARAM"),
    (body("x", order_by="oldest"), "M_INVALID_PARAM"),
    (body("x", keys=["content.secret"]), "M_INVALID_PARAM"),
    (body("x", keys="content.body"), "M_BAD_JSON"),
    (body("x", filter={"limit": -1}), "M_BAD_JSON"),
    (body("x", filter={"limit": "10"}), "M_BAD_JSON"),
    (body("x", filter={"rooms": "!a:b"}), "M_BAD_JSON"),
    (body("x", filter=[]), "M_BAD_JSON"),
    (body("x", event_context={"before_limit": True}), "M_BAD_JSON"),
    (body("x", groupings={"group_by": [{"key": "type"}]}), "M_BAD_JSON"),
    (body("x", include_state="yes"), "M_BAD_JSON"),
]


async def test_bad_bodies_other_categories_and_query_syntax(server: Server) -> None:
    status, answer = await server.call("POST", "/search", None, json=body("x"))
    assert (status, answer["errcode"]) == (401, "M_MISSING_TOKEN")
    alice = await server.register("alice")
    for payload, errcode in BAD_BODIES:
        status, answer = await server.call("POST", "/search", alice, json=payload)
        assert (status, answer.get("errcode")) == (400, errcode), (payload, answer)
    # Another category than room_events: nothing to answer.
    status, answer = await server.call("POST", "/search", alice, json={"search_categories": {}})
    assert (status, answer) == (200, {"search_categories": {}})
    # Query syntax of either engine is only ever text: quotes, operators, NUL.
    room = await make_room(server.hs, alice.user_id)
    hit = await say(server.hs, room, alice.user_id, 'he said "NEAR" OR NOT x\x00y')
    for term in ['"near', "near OR", "NOT", "x:*", "' & !", "\x00", "y"]:
        found = await search(server, alice, term)
        assert ids(found) in ([], [hit.event_id]), term
    assert ids(await search(server, alice, '"NEAR" or')) == [hit.event_id]


async def test_migration_indexes_events_stored_before_it(server: Server) -> None:
    hs = server.hs
    alice = await server.register("alice")
    room = await make_room(hs, alice.user_id, name="Old name")
    message = await say(hs, room, alice.user_id, "stored before the index")
    db = hs.store.db
    statements = [
        s
        for m in load_migrations(db.engine, db.sql_types)
        if m.version == 20
        for s in split_statements(m.sql)
        if s.startswith("INSERT INTO event_search")
    ]
    assert len(statements) == 1
    async with db.transaction("test_reindex") as txn:
        await txn.execute("DELETE FROM event_search")
    assert ids(await search(server, alice, "index")) == []
    async with db.transaction("test_reindex") as txn:
        await txn.execute(statements[0])
    assert ids(await search(server, alice, "index")) == [message.event_id]
    assert len(ids(await search(server, alice, "old", keys=["content.name"]))) == 1
