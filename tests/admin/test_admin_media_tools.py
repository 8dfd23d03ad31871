"""The admin media tools: users' media statistics, a user's media (list, delete, quarantine),
deletion by age and size (keeping avatars), protection; and the download paths the admin UIs
use (a trailing slash, the legacy ``/_matrix/media/v1``). Synapse's keys and units: bytes, ms."""

from __future__ import annotations

from pathlib import Path

import pytest

from homeserver.config import HomeserverConfig
from tests.admin.helpers import V1
from tests.builders import generous_config
from tests.harness import TestServer, TestUser


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path, rc_media_create={"per_second": 1000, "burst_count": 1000})


async def _upload(server: TestServer, user: TestUser, data: bytes) -> str:
    status, body = await server.call(
        "POST",
        "/_matrix/media/v3/upload",
        user,
        data=data,
        headers={"Content-Type": "text/plain"},
    )
    assert status == 200, body
    return str(body["content_uri"]).rsplit("/", 1)[1]


async def _local_media(server: TestServer) -> set[str]:
    rows = await server.hs.store.db.fetchall("SELECT media_id FROM local_media")
    return {r[0] for r in rows}


async def test_media_statistics_user_media_and_deletion(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    bob = await server.register("bob")
    status, _ = await server.call(
        "PUT", f"/profile/{bob.user_id}/displayname", bob, json={"displayname": "Bobby"}
    )
    assert status == 200
    a1 = await _upload(server, alice, b"a" * 100)
    a2 = await _upload(server, alice, b"b" * 50)
    b1 = await _upload(server, bob, b"c" * 10)

    status, body = await server.call("GET", f"{V1}/statistics/users/media", admin)
    assert status == 200, body
    assert body["total"] == 2 and "next_token" not in body
    assert body["users"] == [
        {"user_id": alice.user_id, "displayname": None, "media_count": 2, "media_length": 150},
        {"user_id": bob.user_id, "displayname": "Bobby", "media_count": 1, "media_length": 10},
    ]
    status, body = await server.call(
        "GET",
        f"{V1}/statistics/users/media",
        admin,
        params={"order_by": "media_length", "limit": "1"},
    )
    assert [u["user_id"] for u in body["users"]] == [bob.user_id] and body["next_token"] == 1
    status, body = await server.call(
        "GET", f"{V1}/statistics/users/media", admin, params={"search_term": "bobb"}
    )
    assert [u["user_id"] for u in body["users"]] == [bob.user_id]
    status, body = await server.call(
        "GET", f"{V1}/statistics/users/media", admin, params={"until_ts": "1"}
    )
    assert body == {"users": [], "total": 0}
    for params in ({"order_by": "nope"}, {"from_ts": "x"}, {"dir": "up"}, {"search_term": ""}):
        status, body = await server.call(
            "GET", f"{V1}/statistics/users/media", admin, params=params
        )
        assert status == 400 and body["errcode"] == "M_INVALID_PARAM", (params, body)

    status, body = await server.call("GET", f"{V1}/users/{alice.user_id}/media", admin)
    assert status == 200, body
    assert body["total"] == 2 and [m["media_id"] for m in body["media"]] == [a2, a1]  # newest
    assert set(body["media"][0]) == {
        "media_id",
        "media_type",
        "media_length",
        "upload_name",
        "created_ts",
        "last_access_ts",
        "quarantined_by",
        "safe_from_quarantine",
    }
    assert body["media"][0]["media_length"] == 50 and body["media"][0]["created_ts"] > 10**12

    # Protection, then quarantine of all of alice's media: the protected one is spared.
    status, body = await server.call("POST", f"{V1}/media/protect/{a1}", admin, json={})
    assert (status, body) == (200, {})
    status, body = await server.call(
        "POST", f"{V1}/user/{alice.user_id}/media/quarantine", admin, json={}
    )
    assert (status, body) == (200, {"num_quarantined": 1})
    status, body = await server.call("POST", f"{V1}/media/unprotect/{a1}", admin, json={})
    assert status == 200
    status, body = await server.call("POST", f"{V1}/media/protect/nothing", admin, json={})
    assert status == 404

    # Deletion by age and size: bob's avatar is kept, quarantined media too (Synapse).
    avatar = await _upload(server, bob, b"d" * 500)
    status, _ = await server.call(
        "PUT",
        f"/profile/{bob.user_id}/avatar_url",
        bob,
        json={"avatar_url": f"mxc://test.example/{avatar}"},
    )
    assert status == 200
    future = str(server.hs.clock() + 60_000)
    status, body = await server.call(
        "POST", f"{V1}/media/delete", admin, params={"before_ts": future, "size_gt": "20"}
    )
    assert status == 200, body
    assert body == {"deleted_media": [a1], "total": 1}
    assert await _local_media(server) == {a2, b1, avatar}
    status, body = await server.call(
        "POST",
        f"{V1}/media/test.example/delete",
        admin,
        params={"before_ts": future, "keep_profiles": "false", "size_gt": "100"},
    )
    assert body == {"deleted_media": [avatar], "total": 1}
    status, body = await server.call(
        "POST", f"{V1}/media/other.example/delete", admin, params={"before_ts": "1"}
    )
    assert status == 400
    status, body = await server.call("POST", f"{V1}/media/delete", admin)
    assert status == 400 and body["errcode"] == "M_MISSING_PARAM"

    status, body = await server.call("DELETE", f"{V1}/users/{bob.user_id}/media", admin)
    assert (status, body) == (200, {"deleted_media": [b1], "total": 1})
    assert await _local_media(server) == {a2}
    for user in ("@ghost:test.example", "@x:other.example", "nope"):
        status, _ = await server.call("GET", f"{V1}/users/{user}/media", admin)
        assert status in (400, 404)

    # The download paths the UIs use (a2 was quarantined above: released first).
    status, _ = await server.call("POST", f"{V1}/media/unquarantine/test.example/{a2}", admin)
    assert status == 200
    for path in (
        f"/_matrix/client/v1/media/download/test.example/{a2}/",
        f"/_matrix/media/v1/download/test.example/{a2}",
    ):
        response = await server.client.get(
            path, headers={"Authorization": f"Bearer {alice.access_token}"}
        )
        # The legacy path serves only media uploaded without authentication: a 404 there is
        # the repository's answer (M_NOT_FOUND), not a missing route (M_UNRECOGNIZED).
        if path.startswith("/_matrix/client"):
            assert response.status == 200, await response.text()
            assert await response.read() == b"b" * 50
        else:
            assert (await response.json())["errcode"] != "M_UNRECOGNIZED"
