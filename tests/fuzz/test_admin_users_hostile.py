"""Hostile input against the admin API's user endpoints of issue 19, sent by a server admin (so
it reaches past authentication into the handlers, which tests/fuzz/test_hostile_input.py's
ordinary user cannot): malformed and mistyped bodies, NUL, huge numbers, hostile path segments
and query parameters. Every answer is below 500 and a Matrix error when refused, and a refused
request stores nothing (the tables these endpoints write are compared before and after)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig
from tests.builders import generous_config
from tests.harness import TestServer

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"
BOB = "@bob:test.example"

#: (method, path with {user}/{device}/{token}/{id} slots) of every endpoint under test.
ROUTES = [
    ("GET", "/_synapse/admin/v3/users"),
    ("GET", f"{V1}/username_available"),
    ("GET", f"{V2}/users/{{user}}/devices"),
    ("POST", f"{V2}/users/{{user}}/devices"),
    ("GET", f"{V2}/users/{{user}}/devices/{{device}}"),
    ("PUT", f"{V2}/users/{{user}}/devices/{{device}}"),
    ("DELETE", f"{V2}/users/{{user}}/devices/{{device}}"),
    ("POST", f"{V2}/users/{{user}}/delete_devices"),
    ("GET", f"{V1}/users/{{user}}/joined_rooms"),
    ("GET", f"{V1}/users/{{user}}/memberships"),
    ("GET", f"{V1}/users/{{user}}/pushers"),
    ("GET", f"{V1}/users/{{user}}/accountdata"),
    ("GET", f"{V1}/users/{{user}}/sent_invite_count"),
    ("GET", f"{V1}/users/{{user}}/cumulative_joined_room_count"),
    ("GET", f"{V1}/users/{{user}}/override_ratelimit"),
    ("POST", f"{V1}/users/{{user}}/override_ratelimit"),
    ("DELETE", f"{V1}/users/{{user}}/override_ratelimit"),
    ("GET", f"{V1}/experimental_features/{{user}}"),
    ("PUT", f"{V1}/experimental_features/{{user}}"),
    ("POST", f"{V1}/users/{{user}}/shadow_ban"),
    ("DELETE", f"{V1}/users/{{user}}/shadow_ban"),
    ("PUT", f"{V1}/suspend/{{user}}"),
    ("POST", f"{V1}/users/{{user}}/login"),
    ("POST", f"{V1}/reset_password/{{user}}"),
    ("POST", f"{V1}/users/{{user}}/_allow_cross_signing_replacement_without_uia"),
    ("POST", f"{V1}/user/{{user}}/redact"),
    ("GET", f"{V1}/user/redact_status/{{id}}"),
    ("GET", f"{V1}/whois/{{user}}"),
    ("GET", f"{V1}/registration_tokens"),
    ("POST", f"{V1}/registration_tokens/new"),
    ("GET", f"{V1}/registration_tokens/{{token}}"),
    ("PUT", f"{V1}/registration_tokens/{{token}}"),
    ("DELETE", f"{V1}/registration_tokens/{{token}}"),
    ("GET", "/_matrix/client/v1/register/m.login.registration_token/validity"),
]

#: Every body field these endpoints read.
FIELDS = [
    "devices",
    "device_id",
    "display_name",
    "messages_per_second",
    "burst_count",
    "features",
    "new_password",
    "logout_devices",
    "valid_until_ms",
    "suspend",
    "rooms",
    "reason",
    "limit",
    "use_admin",
    "before_ts",
    "after_ts",
    "token",
    "length",
    "uses_allowed",
    "expiry_time",
    "user_id",
]

#: Values put in every field at once (as JSON), then the raw bodies.
LEAVES: list[Any] = [None, "a\x00b", 2**70, -5, {"x": ["\x00"]}, "x" * 5000]
RAW_BODIES = [b"", b"[]", b"{", b"\xff\xfe", b'{"features": {"\\u0000": 1}}']

#: Hostile values of each path slot (already percent-encoded), after a valid one.
PATH_VALUES = {
    "user": [BOB, "%00", "@bob%00:test.example", "notauser", "@x:other.example", "@" + "a" * 300],
    "device": ["BOBDEV", "%00", "x" * 300],
    "token": ["tok", "%00", "a%2Fb", "x" * 100],
    "id": ["nope", "%00"],
}

QUERIES = [
    "from_ts=abc&deactivated=maybe&valid=perhaps",
    "from_ts=-1&from=-1&limit=abc",
    "from_ts=99999999999999999999999&limit=100000000",
    "order_by=evil&dir=sideways&admins=2",
    "name=%00&user_id=%00&username=%00&token=%00&user_types=%00&not_user_type=%00",
    "username=" + "a" * 300,
]


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


#: The tables these endpoints write.
_WRITTEN_TABLES = (
    "ratelimit_override",
    "per_user_experimental_features",
    "registration_tokens",
    "registration_token_sessions",
    "user_redactions",
    "access_tokens",
    "devices",
)


async def _snapshot(server: TestServer) -> tuple[Any, ...]:
    db = server.hs.store.db
    counts = await db.fetchone(
        "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {table})" for table in _WRITTEN_TABLES)
    )
    users = await db.fetchall(
        "SELECT u.user_id, u.password_hash, u.shadow_banned, u.suspended,"
        " u.cross_signing_replaceable_before_ms, d.device_id, d.display_name"
        " FROM users u LEFT JOIN devices d ON d.user_id = u.user_id"
        " ORDER BY u.user_id, d.device_id"
    )
    return counts, users


def _fill(template: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


async def _fire(
    server: TestServer,
    headers: dict[str, str],
    method: str,
    target: str,
    body: bytes | None,
) -> None:
    before = await _snapshot(server)
    status, text = await server.call_exact(method, target, data=body, headers=headers)
    where = f"{method} {target[:200]} body={body[:100] if body else body!r}"
    assert status < 500, f"{where} -> {status} {text[:300]}"
    if status >= 400:
        parsed = json.loads(text)
        assert isinstance(parsed.get("errcode"), str) and parsed["errcode"].startswith("M_"), (
            f"{where} -> {status} {text[:300]}"
        )
        assert isinstance(parsed.get("error"), str), where
        assert await _snapshot(server) == before, f"{where} -> {status} changed stored data"


async def test_admin_user_endpoints_refuse_hostile_input_and_store_nothing(
    server: TestServer,
) -> None:
    admin = await server.register("root", admin=True)
    bob = await server.register("bob")
    await server.login_device(bob, "BOBDEV")
    headers = {"Authorization": f"Bearer {admin.access_token}", "Content-Type": "application/json"}
    valid = {name: values[0] for name, values in PATH_VALUES.items()}
    bodies = [json.dumps({f: leaf for f in FIELDS}).encode() for leaf in LEAVES] + RAW_BODIES
    for method, template in ROUTES:
        path = _fill(template, valid)
        if method in ("POST", "PUT"):
            for body in bodies:
                await _fire(server, headers, method, path, body)
        for name, values in PATH_VALUES.items():
            if "{" + name + "}" not in template:
                continue
            for hostile in values[1:]:
                target = _fill(template, {**valid, name: hostile})
                await _fire(server, headers, method, target, b"{}" if method != "GET" else None)
        for query in QUERIES:
            await _fire(
                server, headers, method, f"{path}?{query}", None if method == "GET" else b"{}"
            )
    await server.hs.user_redactions.wait_idle()
