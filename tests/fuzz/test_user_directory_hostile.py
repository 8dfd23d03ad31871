"""Hostile bodies against ``POST /user_directory/search`` (issue 16): near-valid and garbage
bodies, hostile search terms (LIKE wildcards, NUL, surrogates, huge words, many words) and
limits. For every example: no 5xx and no ERROR logged; a 4xx carries ``errcode`` and ``error``;
a 200 has the response shape and names only users the searcher may see (never one who shares no
room with them, nor a deactivated one); and the request wrote nothing (row counts of every
table unchanged). A fifth of the examples run on PostgreSQL."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.builders import invite, join, make_room
from tests.fuzz import body_strategies as bs
from tests.fuzz.test_endpoint_bodies import Snapshot, _table_names
from tests.harness import TestServer, TestUser

_EXAMPLES = max(settings.default.max_examples, 50)

_terms = st.sampled_from(
    ["bob", "Bob", "car", "@bob:test.example", "test", "dave", "zed", "%", "_", "\\", "%_",
     "' OR 1=1 --", "b%", "a_b", " ", "", "bob " * 40, "x" * 70_000, "\x00", "b\x00b",
     "\ud800", "𝕏", "ǅ", "ß", "İ"]
) | bs.unicode_edges | st.text(max_size=40)  # fmt: skip
_limits = st.sampled_from([0, 1, 10, 50, 51, -1, 2**63, -(2**63), 10**30]) | st.integers()
_bodies = bs.near_valid_or_garbage(
    bs.near_dict(required={"search_term": _terms}, optional={"limit": _limits})
)


@dataclass
class _Live:
    alice: TestUser
    visible: frozenset[str]
    snapshot: Snapshot


async def _live(server: TestServer) -> _Live:
    live: _Live | None = getattr(server, "_directory_live", None)
    if live is not None:
        return live
    hs = server.hs
    alice, bob, carol, dave, eve = [
        await server.register(n) for n in ("alice", "bob", "carol", "dave", "eve")
    ]
    private = await make_room(hs, alice.user_id, join_rule="invite")
    await invite(hs, private, alice.user_id, bob.user_id)
    await join(hs, private, bob.user_id)
    public = await make_room(hs, carol.user_id, join_rule="public")
    await join(hs, public, eve.user_id)
    assert await hs.store.users.deactivate_user(eve.user_id)
    del dave  # in no room: never visible to Alice
    db = hs.store.db
    live = _Live(
        alice, frozenset({bob.user_id, carol.user_id}), Snapshot(db, await _table_names(db))
    )
    server._directory_live = live  # type: ignore[attr-defined]
    return live


async def _example(
    server: TestServer, caplog: pytest.LogCaptureFixture, data: st.DataObject
) -> None:
    live = await _live(server)
    body = bs.serialize(data.draw(_bodies, label="body"))
    caplog.clear()
    before = await live.snapshot.take(None)
    response = await server.client.request(
        "POST",
        "/_matrix/client/v3/user_directory/search",
        data=body,
        headers={"Authorization": f"Bearer {live.alice.access_token}"},
    )
    text = await response.text()
    after = await live.snapshot.take(None)
    where = f"body={body[:200]!r} -> {response.status} {text[:200]}"
    assert response.status < 500, where
    answer: Any = await response.json(content_type=None)
    if response.status == 200:
        assert set(answer) == {"limited", "results"} and isinstance(answer["limited"], bool), where
        found = {r["user_id"] for r in answer["results"]}
        assert found <= live.visible, where
    else:
        assert 400 <= response.status < 500, where
        assert isinstance(answer.get("errcode"), str) and isinstance(answer.get("error"), str)
    assert before == after, f"{where}: the search wrote something"
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not logged, (where, logged)


@pytest.mark.parametrize("db_engine", ["sqlite"], indirect=True)
@settings(max_examples=_EXAMPLES, deadline=None)
@given(data=st.data())
async def test_hostile_directory_searches_sqlite(
    server: TestServer, caplog: pytest.LogCaptureFixture, data: st.DataObject
) -> None:
    await _example(server, caplog, data)


@pytest.mark.postgres
@pytest.mark.parametrize("db_engine", ["postgres"], indirect=True)
@settings(max_examples=max(_EXAMPLES // 5, 20), deadline=None)
@given(data=st.data())
async def test_hostile_directory_searches_postgres(
    server: TestServer, caplog: pytest.LogCaptureFixture, data: st.DataObject
) -> None:
    await _example(server, caplog, data)
