"""Hostile input against the admin room, report, notice, media and purge endpoints, as a server
admin (the general hostile suite calls them as a plain user, who only reaches the 403): never a
5xx, always Matrix error JSON, and nothing stored by a refused request."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homeserver.app import Homeserver
from homeserver.config import HomeserverConfig
from tests import harness
from tests.builders import generous_config
from tests.fuzz.strategies import (
    Context,
    dumps_json,
    encode_segment,
    mutated_bodies,
    path_values,
    query_strings,
    template_for,
    valid_values,
)
from tests.fuzz.test_hostile_input import ROUTES, _check, _fill_path, _request

#: the routes this suite drives with an admin's token.
_MINE = re.compile(
    r"/_synapse/admin/v1/(event_reports|user_reports|send_server_notice|join/|fetch_event"
    r"|purge_history|scheduled_tasks|statistics/|media/(delete|protect|unprotect)"
    r"|media/\{server_name\}/delete|users/\{user_id\}/media|user/\{user_id\}/media"
    r"|rooms/\{room_id\}/(forward_extremities|block|make_room_admin|messages|context"
    r"|timestamp_to_event))"
    r"|/rooms/\{room_id\}/report|/users/\{user_id\}/report|/timestamp_to_event"
)
MY_ROUTES = [r for r in ROUTES if _MINE.search(r[1])]
_PARAM = re.compile(r"\{([a-z_]+)\}")
#: tables a refused request must not add a row to.
_WATCHED = (
    "event_reports",
    "room_reports",
    "user_reports",
    "purge_history",
    "blocked_rooms",
    "events",
    "users",
)

_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(
        tmp_path, server_notices={"system_mxid_localpart": "notices", "auto_join": True}
    )


@pytest.fixture
async def background_finishes(hs: Homeserver) -> AsyncIterator[None]:
    yield
    await hs.history_purge.wait_idle()


async def _counts(server: harness.TestServer) -> dict[str, int]:
    db = server.hs.store.db
    return {t: int(await db.fetchval(f"SELECT COUNT(*) FROM {t}")) for t in _WATCHED}


async def _admin_context(server: harness.TestServer, cache: dict[str, Any]) -> Context:
    ctx: Context | None = cache.get("ctx")
    if ctx is not None and not ctx.dirty:
        return ctx
    number = cache.get("n", 0) + 1
    cache["n"] = number
    admin = await server.register(f"fuzzadmin{number}", admin=True)
    status, body = await server.call("POST", "/createRoom", admin, json={"preset": "public_chat"})
    assert status == 200, body
    room_id = body["room_id"]
    status, body = await server.call(
        "PUT",
        f"/rooms/{room_id}/send/m.room.message/t1",
        admin,
        json={"msgtype": "m.text", "body": "hi"},
    )
    assert status == 200, body
    ctx = Context(admin, room_id, body["event_id"])
    cache["ctx"] = ctx
    return ctx


def path_values_valid(ctx: Context, name: str) -> str:
    return encode_segment(valid_values(ctx, name)[0])


def test_the_routes_are_found() -> None:
    templates = {t for _, t in MY_ROUTES}
    assert "/_synapse/admin/v1/purge_history/{room_id}" in templates
    assert "/_matrix/client/v3/rooms/{room_id}/report/{event_id}" in templates
    assert len(MY_ROUTES) >= 25


async def test_anonymous_and_non_admin_callers_are_refused(
    server: harness.TestServer, background_finishes: None
) -> None:
    """Every admin route here: 401 without a token, 403 for a user who is not an admin, and
    nothing stored either way."""
    cache: dict[str, Any] = {}
    ctx = await _admin_context(server, cache)
    mallory = await server.register("mallory")
    before = await _counts(server)
    admin_routes = [r for r in MY_ROUTES if r[1].startswith("/_synapse/admin/")]
    assert len(admin_routes) >= 25
    for method, template in admin_routes:
        parts = {n: path_values_valid(ctx, n) for n in _PARAM.findall(template)}
        raw_path = _fill_path(template, parts)
        body = b"{}" if method in ("PUT", "POST") else None
        for user, expected in ((None, 401), (mallory, 403)):
            status, text = await _request(
                server, method, raw_path, "", user, body, "application/json"
            )
            assert status == expected, (method, raw_path, status, text)
            _check(method, raw_path, "", body, status, text)
    assert await _counts(server) == before


@settings(max_examples=150, **_SETTINGS)
@given(data=st.data())
async def test_hostile_admin_requests(
    server: harness.TestServer, background_finishes: None, data: st.DataObject
) -> None:
    cache: dict[str, Any] = getattr(server, "_admin_fuzz", {})
    server._admin_fuzz = cache  # type: ignore[attr-defined]
    ctx = await _admin_context(server, cache)
    method, template = data.draw(st.sampled_from(MY_ROUTES), label="route")
    names = _PARAM.findall(template)
    hostile = data.draw(st.sampled_from([None, *names]), label="hostile")
    parts = {n: data.draw(path_values(ctx, n, n == hostile), label=n) for n in names}
    query = data.draw(query_strings(), label="query")
    body: bytes | None = None
    if method in ("PUT", "POST"):
        shape = template_for(template)
        value = data.draw(mutated_bodies(shape), label="body") if shape is not None else {}
        body = dumps_json(value)
    raw_path = _fill_path(template, parts)
    before = await _counts(server)
    status, text = await _request(
        server, method, raw_path, query, ctx.user, body, "application/json"
    )
    _check(method, raw_path, query, body, status, text)
    if status >= 400:
        after = await _counts(server)
        grown = {t: (before[t], after[t]) for t in _WATCHED if after[t] > before[t]}
        assert not grown, f"{method} {raw_path}?{query} -> {status} stored rows: {grown}"
    elif method != "GET":
        ctx.dirty = True
