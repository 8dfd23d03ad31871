"""Hostile media bodies, both engines: every content type and size against the upload
endpoints (POST upload, PUT into a created MXC URI, PUT into one that is not the caller's or
does not exist), with and without a token. Whatever arrives: never a 5xx, a Matrix error for
every refusal, and a refused request stores nothing (no row, no file, no leftover temporary
file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homeserver.config import HomeserverConfig
from tests.builders import generous_config
from tests.harness import TestServer, TestUser

LIMIT = 4096
CONTENT_TYPES = [
    None,
    "",
    "image/jpeg",
    "image/svg+xml",
    "text/html; charset=utf-8",
    "application/octet-stream",
    "multipart/form-data; boundary=x",
    "application/json",
    "x" * 300,
    'image/png; a="b"',
    "ÿ/ÿ",
    "../../../../etc/passwd",
    'text/plain; charset="',
]
SIZES = [0, 1, LIMIT - 1, LIMIT, LIMIT + 1, 3 * LIMIT]
FILENAMES = [None, "", "a.jpg", "../../x", "\u202egpj.exe", "x" * 1000, "a\x00b"]


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(
        tmp_path,
        max_upload_size=LIMIT,
        rc_media_create={"per_second": 100_000, "burst_count": 100_000},
        max_pending_media_uploads=100_000,
    )


async def _snapshot(server: TestServer) -> tuple[int, list[str], list[str]]:
    rows = await server.hs.store.db.fetchall(
        "SELECT media_id FROM local_media WHERE sha256 IS NOT NULL ORDER BY media_id"
    )
    root = server.hs.config.media.media_store_path
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    tmp = [f for f in files if f.startswith("tmp")]
    return len(rows), [f for f in files if not f.startswith("tmp")], tmp


async def _send(
    server: TestServer,
    method: str,
    path: str,
    user: TestUser | None,
    body: bytes,
    content_type: str | None,
    filename: str | None,
) -> tuple[int, Any]:
    headers: dict[str, str] = {}
    if user is not None:
        headers["Authorization"] = f"Bearer {user.access_token}"
    if content_type is not None:
        headers["Content-Type"] = content_type
    params = {"filename": filename} if filename is not None else None
    response = await server.client.request(
        method, path, data=body, headers=headers, params=params, skip_auto_headers={"Content-Type"}
    )
    text = await response.text(errors="replace")
    return response.status, text


async def _check_one(
    server: TestServer,
    target: str,
    user: TestUser | None,
    body: bytes,
    content_type: str | None,
    filename: str | None,
    owner: TestUser,
) -> None:
    before = await _snapshot(server)
    if target == "post":
        method, path = "POST", "/_matrix/media/v3/upload"
    else:
        status, created = await server.call("POST", "/_matrix/media/v1/create", owner)
        assert status == 200, created
        before = await _snapshot(server)
        method, path = "PUT", "/_matrix/media/v3/upload/" + created["content_uri"][6:]
        if target == "unknown":
            path = "/_matrix/media/v3/upload/test.example/NoSuchMediaAtAll"
    status, text = await _send(server, method, path, user, body, content_type, filename)
    where = f"{method} {path} {len(body)}B {content_type!r} {filename!r} -> {status} {text[:200]}"
    assert status < 500, where
    after = await _snapshot(server)
    assert after[2] == [], f"temporary file left: {where}"
    if status >= 400:
        parsed = json.loads(text)
        assert isinstance(parsed.get("errcode"), str), where
        assert after == before, f"a refused request stored something: {where}"
    else:
        assert len(body) <= LIMIT and user is not None, where
        assert after[0] == before[0] + 1, where


@pytest.mark.parametrize("target", ["post", "created", "unknown"])
async def test_every_content_type_and_size(server: TestServer, target: str) -> None:
    alice = await server.register("alice")
    mallory = await server.register("mallory")
    for size in SIZES:
        for content_type in CONTENT_TYPES:
            body = bytes(i % 251 for i in range(size))
            await _check_one(server, target, alice, body, content_type, None, alice)
    for filename in FILENAMES:
        await _check_one(server, target, alice, b"named", "text/plain", filename, alice)
    # Someone else's MXC URI, and no token at all.
    await _check_one(server, target, mallory, b"not yours", "text/plain", None, alice)
    await _check_one(server, target, None, b"anonymous", "text/plain", None, alice)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=st.binary(max_size=2 * LIMIT),
    content_type=st.none() | st.text(max_size=80).filter(lambda t: "\r" not in t and "\n" not in t),
    filename=st.none() | st.text(max_size=40),
    target=st.sampled_from(["post", "created"]),
)
async def test_random_media_bodies(
    server: TestServer, body: bytes, content_type: str | None, filename: str | None, target: str
) -> None:
    users: dict[str, TestUser] = getattr(server, "_media_users", {})
    if not users:
        users["alice"] = await server.register("alice")
        server._media_users = users  # type: ignore[attr-defined]
    if content_type is not None:
        # What an HTTP client can send at all: visible ASCII and spaces (others are refused
        # by the client before they leave).
        content_type = "".join(ch for ch in content_type if " " <= ch <= "~")
    await _check_one(server, target, users["alice"], body, content_type, filename, users["alice"])
