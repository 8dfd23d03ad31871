"""Hostile input on the notification endpoints (both engines): ``/pushers/set`` bodies and
``/notifications`` queries never get a 5xx, and a refused pusher body stores nothing."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.strategies import BODY_TEMPLATES, dumps_json, mutated_bodies, query_strings
from tests.harness import TestServer

_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "max_examples": 25,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}


@settings(**_SETTINGS)
@given(data=st.data())
async def test_pusher_bodies_and_notification_queries(
    server: TestServer, data: st.DataObject
) -> None:
    cache: dict[str, Any] = getattr(server, "_push_fuzz", {})
    server._push_fuzz = cache  # type: ignore[attr-defined]
    if "user" not in cache:
        cache["user"] = await server.register("pushfuzz")
    user = cache["user"]
    _, before = await server.call("GET", "/pushers", user)
    body = data.draw(mutated_bodies(BODY_TEMPLATES["/pushers/set"]), label="body")
    status, text = await server.call_exact(
        "POST",
        "/_matrix/client/v3/pushers/set",
        data=dumps_json(body),
        headers={"Authorization": f"Bearer {user.access_token}"},
    )
    assert status < 500, (body, status, text)
    if status != 200:
        _, listed = await server.call("GET", "/pushers", user)
        assert listed["pushers"] == before["pushers"], (body, text)
    query = data.draw(query_strings(), label="query")
    status, text = await server.call_exact(
        "GET",
        "/_matrix/client/v3/notifications?" + query,
        headers={"Authorization": f"Bearer {user.access_token}"},
    )
    assert status < 500, (query, status, text)
