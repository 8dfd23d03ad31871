"""Hostile search requests (issue 16): arbitrary search terms (either engine's query syntax,
quotes, NUL, lone surrogates, very long words), keys, orderings, filters and ``next_batch``
tokens against ``POST /search``, by a user who joined a ``joined``-visibility room late. Every
answer is 200 or a 400 with an errcode, never a 5xx; a 200 never holds an event the searcher
may not see; and a search writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.config import HomeserverConfig
from tests.builders import generous_config, join, make_room, say
from tests.harness import TestServer, TestUser

_TERMS = st.text(max_size=60) | st.sampled_from(
    [
        '"', '""', "'", "*", "NEAR(a b)", "a OR b", "NOT a", "a AND", "-a", "a:*", "!a", "a & b",
        "a | b", "a <-> b", "(", ")", "\x00", "a\x00b", "\ud800", "x" * 1000, "x" * 1001,
        "^a", "col:a", "{a b}", "\\", "%", "_", "secret", "SECRET*", "sécret", "𝕏",
    ]
)  # fmt: skip
_TOKENS = st.none() | st.sampled_from(
    ["rank_0", "rank_1", "recent_1", "recent_99999999999999999999", "rank_-1", "", "x", "%00"]
)
_LEAVES = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=10)


def _filters() -> st.SearchStrategy[Any]:
    lists = st.lists(st.text(max_size=12) | st.sampled_from(["*", "m.room.*", "@a:b"]), max_size=3)
    return _LEAVES | st.fixed_dictionaries(
        {},
        optional={
            "limit": _LEAVES | st.integers(0, 200),
            "rooms": lists | _LEAVES,
            "not_senders": lists,
            "types": lists,
            "contains_url": _LEAVES,
        },
    )


_BODIES = st.fixed_dictionaries(
    {"search_term": _TERMS},
    optional={
        "keys": st.lists(st.sampled_from(["content.body", "content.name", "x"]), max_size=3)
        | _LEAVES,
        "order_by": st.sampled_from(["rank", "recent", "x"]) | _LEAVES,
        "filter": _filters(),
        "event_context": _LEAVES
        | st.fixed_dictionaries(
            {},
            optional={"before_limit": _LEAVES, "after_limit": _LEAVES, "include_profile": _LEAVES},
        ),
        "groupings": _LEAVES
        | st.fixed_dictionaries(
            {
                "group_by": st.lists(
                    st.fixed_dictionaries(
                        {"key": _LEAVES | st.sampled_from(["room_id", "sender"])}
                    ),
                    max_size=2,
                )
            }
        ),
        "include_state": _LEAVES,
    },
)


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def _setting(server: TestServer) -> tuple[TestUser, set[str], set[str]]:
    """bob, the events he may see and those he may not (cached on the server per test)."""
    cached = getattr(server, "_search_fuzz", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    hs = server.hs
    alice = await server.register("alice")
    bob = await server.register("bob")
    room = await make_room(hs, alice.user_id, history_visibility="joined", name="secret room")
    hidden = {(await say(hs, room, alice.user_id, f"secret a b {i}")).event_id for i in range(3)}
    await join(hs, room, bob.user_id)
    seen = {
        (await say(hs, room, alice.user_id, f"secret a b later {i}")).event_id for i in range(3)
    }
    server._search_fuzz = (bob, seen, hidden)  # type: ignore[attr-defined]
    return bob, seen, hidden


async def _rows(server: TestServer) -> tuple[int, ...]:
    db = server.hs.store.db
    counts = []
    for table in ("events", "event_search", "redactions", "users", "access_tokens"):
        counts.append(int(await db.fetchval(f"SELECT COUNT(*) FROM {table}")))
    return tuple(counts)


@settings(max_examples=80)
@given(data=st.data())
async def test_hostile_search_requests(server: TestServer, data: st.DataObject) -> None:
    bob, seen, hidden = await _setting(server)
    before = await _rows(server)
    room_events = data.draw(_BODIES, label="room_events")
    token = data.draw(_TOKENS, label="next_batch")
    status, answer = await server.call(
        "POST",
        "/search",
        bob,
        json={"search_categories": {"room_events": room_events}},
        params=None if token is None else {"next_batch": token},
    )
    assert status in (200, 400), (status, answer)
    if status == 400:
        assert isinstance(answer.get("errcode"), str) and answer.get("error"), answer
    else:
        found = answer["search_categories"]["room_events"]
        returned = {r["result"]["event_id"] for r in found["results"]}
        for result in found["results"]:
            context = result.get("context", {})
            returned |= {e["event_id"] for e in context.get("events_before", [])}
        assert returned.isdisjoint(hidden)
        assert found["count"] <= len(seen) + 1  # the room's name event may match too
    assert await _rows(server) == before
