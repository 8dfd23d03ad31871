"""Hostile input against every client and admin route: whatever arrives, the answer is a clear
Matrix error (``errcode`` + ``error``, a 4xx status), never a 500, never internals (a stack
trace, SQL, a driver name or a file path) in the body.

The routes are read from the application itself, so a route added later is fuzzed too. Each test
keeps one in-process server (both engines) and a live context (a user, a room, an event) whose
IDs are mixed into the path parameters, so that random bodies reach past routing and auth into
the handlers and services.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homeserver.http.factory import new_listener_app
from tests import harness
from tests.fuzz.strategies import (
    AUTH_HEADERS,
    BODY_TEMPLATES,
    Context,
    content_types,
    dumps_json,
    encode_segment,
    fill_template,
    json_objects,
    json_values,
    mutated_bodies,
    non_json_bodies,
    path_values,
    query_strings,
    template_for,
    valid_values,
)

_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}

#: Markers of internals that must never reach a client.
_LEAK_MARKERS = ("Traceback", "sqlite", "asyncpg", "SELECT ", "INSERT ", 'File "', "/work/")


def _all_routes() -> list[tuple[str, str]]:
    """(method, path template) of every client/admin route; r0 duplicates and HEAD left out."""
    app = new_listener_app(["client", "admin"])
    routes: list[tuple[str, str]] = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        template = info.get("formatter") or info.get("path")
        if not template or route.method == "HEAD" or template.startswith("/_matrix/client/r0"):
            continue
        if template == "/health":
            continue
        routes.append((route.method, template))
    return sorted(set(routes))


ROUTES = _all_routes()
_PARAM = re.compile(r"\{([a-z_]+)\}")

# ----------------------------------------------------------------------------- the server side

_counter = iter(range(1_000_000))


async def _context(server: harness.TestServer, cache: dict[str, Context]) -> Context:
    ctx = cache.get("ctx")
    if ctx is not None and not ctx.dirty:
        return ctx
    user = await server.register(f"fuzz{next(_counter)}")
    status, body = await server.call("POST", "/createRoom", user, json={"preset": "public_chat"})
    assert status == 200, body
    room_id = body["room_id"]
    status, body = await server.call(
        "PUT",
        f"/rooms/{room_id}/send/m.room.message/t1",
        user,
        json={"msgtype": "m.text", "body": "hi"},
    )
    assert status == 200, body
    ctx = Context(user, room_id, body["event_id"])
    cache["ctx"] = ctx
    return ctx


def _fill_path(template: str, values: dict[str, str]) -> str:
    return _PARAM.sub(lambda m: values[m.group(1)], template)


async def _request(
    server: harness.TestServer,
    method: str,
    raw_path: str,
    query: str,
    user: harness.TestUser | None,
    body: bytes | None,
    content_type: str | None,
) -> tuple[int, str]:
    target = raw_path + ("?" + query if query else "")
    headers: dict[str, str] = {}
    if user is not None:
        headers["Authorization"] = f"Bearer {user.access_token}"
    if content_type is not None:
        headers["Content-Type"] = content_type
    return await server.call_exact(method, target, data=body, headers=headers)


def _check(
    method: str, raw_path: str, query: str, body: bytes | None, status: int, text: str
) -> None:
    where = f"{method} {raw_path}?{query} body={body[:300] if body else body!r}"
    assert status < 500, f"{where} -> {status} {text[:500]}"
    sent = (raw_path + query).encode() + (body or b"")
    for marker in _LEAK_MARKERS:
        # A marker the request itself carried may be echoed back (a display name, say).
        if marker.encode() not in sent:
            assert marker not in text, f"{where} leaked {marker!r}: {text[:500]}"
    if len(raw_path) + len(query) > _MAX_REQUEST_LINE:
        # aiohttp's HTTP parser refuses the request line before any middleware runs, with a
        # plain-text 400 that echoes nothing internal; there is no app code to make it JSON.
        return
    if status >= 400:
        try:
            parsed = json.loads(text)
        except ValueError:
            raise AssertionError(
                f"{where} -> {status} non-JSON error body {text[:300]!r}"
            ) from None
        assert isinstance(parsed, dict), f"{where} -> {status} {text[:300]}"
        if status == 401 and "flows" in parsed and "errcode" not in parsed:
            return  # the spec's user-interactive auth challenge carries no errcode
        assert isinstance(parsed.get("errcode"), str) and parsed["errcode"].startswith("M_"), (
            f"{where} -> {status} {text[:300]}"
        )
        assert isinstance(parsed.get("error"), str), f"{where} -> {status} {text[:300]}"


#: aiohttp's default limit on the request line (bytes).
_MAX_REQUEST_LINE = 8190 - 64

_DESTRUCTIVE = re.compile(
    r"/logout|/devices|/delete_devices|/password|/leave|/kick|/ban|/upgrade|/state|/forget|/join"
)


async def _fire(
    server: harness.TestServer,
    ctx: Context,
    method: str,
    template: str,
    path_parts: dict[str, str],
    query: str,
    authed: bool,
    body: bytes | None,
    content_type: str | None,
) -> None:
    raw_path = _fill_path(template, path_parts)
    user = ctx.user if authed else None
    status, text = await _request(server, method, raw_path, query, user, body, content_type)
    _check(method, raw_path, query, body, status, text)
    if authed and status < 300 and method != "GET" and _DESTRUCTIVE.search(template):
        # The request may have logged the user out or lost their power: start afresh.
        ctx.dirty = True


#: Mostly authenticated (hypothesis favours the first element), sometimes anonymous.
_authed = st.sampled_from([True, True, True, False])


def _params(template: str) -> list[str]:
    return _PARAM.findall(template)


# ----------------------------------------------------------------------------- the tests


@settings(max_examples=600, **_SETTINGS)
@given(data=st.data())
async def test_random_json_bodies(server: harness.TestServer, data: st.DataObject) -> None:
    cache: dict[str, Context] = getattr(server, "_fuzz_cache", {})
    server._fuzz_cache = cache  # type: ignore[attr-defined]
    ctx = await _context(server, cache)
    method, template = data.draw(st.sampled_from(ROUTES), label="route")
    parts = {
        name: data.draw(path_values(ctx, name, False), label=name) for name in _params(template)
    }
    value = data.draw(json_objects | json_values, label="body")
    authed = data.draw(_authed, label="authed")
    await _fire(
        server, ctx, method, template, parts, "", authed, dumps_json(value), "application/json"
    )


@settings(max_examples=400, **_SETTINGS)
@given(data=st.data())
async def test_non_json_bodies(server: harness.TestServer, data: st.DataObject) -> None:
    cache: dict[str, Context] = getattr(server, "_fuzz_cache", {})
    server._fuzz_cache = cache  # type: ignore[attr-defined]
    ctx = await _context(server, cache)
    method, template = data.draw(st.sampled_from(ROUTES), label="route")
    parts = {
        name: data.draw(path_values(ctx, name, False), label=name) for name in _params(template)
    }
    body = data.draw(non_json_bodies, label="body")
    content_type = data.draw(content_types, label="content_type")
    authed = data.draw(_authed, label="authed")
    await _fire(server, ctx, method, template, parts, "", authed, body, content_type)


@settings(max_examples=500, **_SETTINGS)
@given(data=st.data())
async def test_hostile_path_parameters(server: harness.TestServer, data: st.DataObject) -> None:
    cache: dict[str, Context] = getattr(server, "_fuzz_cache", {})
    server._fuzz_cache = cache  # type: ignore[attr-defined]
    ctx = await _context(server, cache)
    method, template = data.draw(st.sampled_from([r for r in ROUTES if "{" in r[1]]), label="route")
    names = _params(template)
    hostile = data.draw(st.sampled_from(names), label="hostile")
    parts = {name: data.draw(path_values(ctx, name, name == hostile), label=name) for name in names}
    body = dumps_json(data.draw(json_objects, label="body")) if method in ("PUT", "POST") else None
    authed = data.draw(_authed, label="authed")
    await _fire(server, ctx, method, template, parts, "", authed, body, "application/json")


@settings(max_examples=500, **_SETTINGS)
@given(data=st.data())
async def test_hostile_query_parameters(server: harness.TestServer, data: st.DataObject) -> None:
    cache: dict[str, Context] = getattr(server, "_fuzz_cache", {})
    server._fuzz_cache = cache  # type: ignore[attr-defined]
    ctx = await _context(server, cache)
    # The routes that read a query string are weighted up; every route gets junk sometimes.
    readers = [
        r
        for r in ROUTES
        if re.search(
            r"/sync|/messages|/context|/members|/publicRooms|/register/available|/join|/search",
            r[1],
        )
    ]
    method, template = data.draw(st.sampled_from(readers) | st.sampled_from(ROUTES), label="route")
    parts = {
        name: data.draw(path_values(ctx, name, False), label=name) for name in _params(template)
    }
    query = data.draw(query_strings(), label="query")
    body = b"{}" if method in ("PUT", "POST") else None
    authed = data.draw(_authed, label="authed")
    await _fire(server, ctx, method, template, parts, query, authed, body, "application/json")


async def test_every_route_is_fuzzed() -> None:
    # A guard against the route reader silently finding nothing (e.g. a changed aiohttp API).
    assert len(ROUTES) > 50
    assert ("POST", "/_matrix/client/v3/createRoom") in ROUTES
    assert ("POST", "/_synapse/admin/v1/register") in ROUTES


_TEMPLATED_ROUTES = [
    r for r in ROUTES if r[0] in ("PUT", "POST") and template_for(r[1]) is not None
]


@settings(max_examples=600, **_SETTINGS)
@given(data=st.data())
async def test_mutated_valid_bodies(server: harness.TestServer, data: st.DataObject) -> None:
    cache: dict[str, Context] = getattr(server, "_fuzz_cache", {})
    server._fuzz_cache = cache  # type: ignore[attr-defined]
    ctx = await _context(server, cache)
    method, template = data.draw(st.sampled_from(_TEMPLATED_ROUTES), label="route")
    parts = {
        name: data.draw(path_values(ctx, name, False), label=name) for name in _params(template)
    }
    value = data.draw(mutated_bodies(template_for(template)), label="body")
    authed = data.draw(_authed, label="authed")
    await _fire(
        server, ctx, method, template, parts, "", authed, dumps_json(value), "application/json"
    )


def test_templates_match_routes() -> None:
    # Every template names a real route (a renamed route would silently drop out of the fuzz).
    relative = {t.removeprefix("/_matrix/client/v3") for _, t in ROUTES}
    assert set(BODY_TEMPLATES) <= relative


async def test_nul_and_surrogates_in_every_field(server: harness.TestServer) -> None:
    """Deterministically: NUL (which PostgreSQL text cannot hold) and a lone surrogate (which
    UTF-8 cannot encode) in every field of every templated body, all at once and one field at
    a time, with otherwise valid path parameters."""
    cache: dict[str, Context] = {}
    for leaf in ("a\x00b", "a\ud800b"):
        for method, template in _TEMPLATED_ROUTES:
            shape = template_for(template)
            bodies = [fill_template(shape, leaf)]
            if isinstance(shape, dict):
                bodies += [{k: fill_template(v, leaf)} for k, v in shape.items()]
            for index, body in enumerate(bodies):
                ctx = await _context(server, cache)
                parts = {
                    name: encode_segment(
                        f"txn{index}" if name == "txn_id" else valid_values(ctx, name)[0]
                    )
                    for name in _params(template)
                }
                await _fire(server, ctx, method, template, parts, "", True, dumps_json(body), None)


@settings(max_examples=150, **_SETTINGS)
@given(data=st.data())
async def test_hostile_authorization_headers(
    server: harness.TestServer, data: st.DataObject
) -> None:
    cache: dict[str, Context] = getattr(server, "_fuzz_cache", {})
    server._fuzz_cache = cache  # type: ignore[attr-defined]
    ctx = await _context(server, cache)
    method, template = data.draw(st.sampled_from(ROUTES), label="route")
    parts = {
        name: data.draw(path_values(ctx, name, False), label=name) for name in _params(template)
    }
    header = data.draw(
        st.sampled_from(AUTH_HEADERS)
        | st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f")),
        label="authorization",
    )
    query = data.draw(st.sampled_from(["", "access_token=", "access_token=%00x", "access_token=x"]))
    target = _fill_path(template, parts) + ("?" + query if query else "")
    status, text = await server.call_exact(
        method,
        target,
        data=b"{}",
        headers={"Authorization": header, "Content-Type": "application/json"},
    )
    _check(method, _fill_path(template, parts), query, b"{}", status, text)
