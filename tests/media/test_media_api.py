"""The media repository through the client API, both engines: upload, download, thumbnails,
create-then-upload, the legacy paths under authenticated media, what a browser is told about
the content, the size cap, and the admin API (quarantine, delete, a room's media, a purged
room's media)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from homeserver.config import HomeserverConfig
from homeserver.events.draft import EventDraft
from tests.builders import create_room, generous_config
from tests.harness import TestServer, TestUser

V1 = "/_matrix/client/v1/media"
V3 = "/_matrix/media/v3"
ADMIN = "/_synapse/admin/v1"


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(
        tmp_path,
        max_upload_size="300K",
        rc_media_create={"per_second": 1000, "burst_count": 1000},
    )


def jpeg(width: int = 1000, height: int = 500) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


def png(width: int = 64, height: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height), (0, 0, 255, 128)).save(out, "PNG")
    return out.getvalue()


async def upload(
    server: TestServer, user: TestUser, data: bytes, media_type: str, name: str | None = None
) -> str:
    params = {"filename": name} if name else None
    status, body = await server.call(
        "POST",
        f"{V3}/upload",
        user,
        data=data,
        params=params,
        headers={"Content-Type": media_type},
    )
    assert status == 200, body
    uri: str = body["content_uri"]
    assert uri.startswith(f"mxc://{server.hs.server_name}/")
    return uri


async def fetch(
    server: TestServer, path: str, user: TestUser | None = None, **params: str
) -> tuple[int, bytes, Any]:
    headers = {"Authorization": f"Bearer {user.access_token}"} if user else {}
    response = await server.client.get(path, params=params or None, headers=headers)
    return response.status, await response.read(), response.headers


def media_files(server: TestServer) -> list[Path]:
    root = server.hs.config.media.media_store_path
    return sorted(p for p in root.rglob("*") if p.is_file())


async def test_upload_then_download_with_safe_headers(server: TestServer) -> None:
    alice = await server.register("alice")
    data = jpeg()
    uri = await upload(server, alice, data, "image/jpeg", "cat.jpg")
    path = uri.removeprefix("mxc://")

    status, body, headers = await fetch(server, f"{V1}/download/{path}", alice)
    assert status == 200 and body == data
    assert headers["Content-Type"] == "image/jpeg"
    assert headers["Content-Disposition"] == 'inline; filename="cat.jpg"'
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"].startswith("sandbox;")
    # A name in the path replaces the uploaded one; non-ASCII is RFC 5987-encoded.
    status, _, headers = await fetch(server, f"{V1}/download/{path}/ch%C3%A4t.jpg", alice)
    assert headers["Content-Disposition"] == "inline; filename*=utf-8''ch%C3%A4t.jpg"

    # Authenticated media: no token → 401; the legacy path does not serve it.
    assert (await fetch(server, f"{V1}/download/{path}"))[0] == 401
    status, body, _ = await fetch(server, f"{V3}/download/{path}")
    assert status == 404

    # One file on disk, named by content, readable by the owner only.
    [stored] = [p for p in media_files(server) if "content" in p.parts]
    assert stored.read_bytes() == data
    assert stored.stat().st_mode & 0o077 == 0


#: (claimed type, served Content-Type, disposition): active content is never inline.
SERVED_AS = [
    ("text/html", "text/html; charset=UTF-8", "attachment"),
    ("image/svg+xml", "image/svg+xml; charset=UTF-8", "attachment"),
    ("text/plain", "text/plain; charset=UTF-8", "inline"),
    ('image/png"<script>', "application/octet-stream", "attachment"),
    ("../../etc/passwd", "application/octet-stream", "attachment"),
]


async def test_active_content_is_never_inline(server: TestServer) -> None:
    alice = await server.register("alice")
    for media_type, served, disposition in SERVED_AS:
        uri = await upload(server, alice, b"<script>alert(1)</script>", media_type, "x.html")
        status, _, headers = await fetch(server, f"{V1}/download/{uri[6:]}", alice)
        assert status == 200
        assert headers["Content-Type"] == served, media_type
        assert headers["Content-Disposition"].split(";")[0] == disposition, media_type


async def test_thumbnails_crop_and_scale(server: TestServer) -> None:
    alice = await server.register("alice")
    uri = await upload(server, alice, jpeg(1000, 500), "image/jpeg")
    path = f"{V1}/thumbnail/{uri[6:]}"

    status, body, headers = await fetch(server, path, alice, width="30", height="30", method="crop")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(body)).size == (32, 32)  # the configured 32x32 crop

    status, body, _ = await fetch(server, path, alice, width="320", height="240", method="scale")
    assert status == 200
    assert Image.open(io.BytesIO(body)).size == (320, 160)  # aspect kept

    # Asked again: served from the stored thumbnail (one row per size).
    again = await fetch(server, path, alice, width="320", height="240", method="scale")
    assert again[1] == body
    thumbnails = await server.hs.store.media.get_thumbnails(server.hs.server_name, uri[-24:])
    assert len(thumbnails) == 2

    # A PNG gets a PNG; no thumbnail of what is not an image; bad parameters are 400.
    png_uri = await upload(server, alice, png(), "image/png")
    status, body, headers = await fetch(
        server, f"{V1}/thumbnail/{png_uri[6:]}", alice, width="32", height="32"
    )
    assert status == 200 and headers["Content-Type"] == "image/png"
    text_uri = await upload(server, alice, b"hello", "text/plain")
    status, _, _ = await fetch(
        server, f"{V1}/thumbnail/{text_uri[6:]}", alice, width="32", height="32"
    )
    assert status == 404
    status, _, _ = await fetch(server, path, alice, width="-1", height="32")
    assert status == 400
    status, _, _ = await fetch(server, path, alice, width="32", height="32", method="zoom")
    assert status == 400


async def test_oversized_upload_is_refused_and_leaves_nothing(server: TestServer) -> None:
    alice = await server.register("alice")
    big = b"x" * (300 * 1024 + 1)
    status, body = await server.call(
        "POST", f"{V3}/upload", alice, data=big, headers={"Content-Type": "text/plain"}
    )
    assert status == 413 and body["errcode"] == "M_TOO_LARGE"

    # Without a Content-Length (chunked), the cap is applied while streaming.
    async def chunks() -> Any:
        for _ in range(400):
            yield b"y" * 1024

    response = await server.client.post(
        f"{V3}/upload",
        data=chunks(),
        headers={"Authorization": f"Bearer {alice.access_token}", "Content-Type": "text/plain"},
    )
    assert response.status == 413
    assert media_files(server) == []
    assert await server.hs.store.db.fetchval("SELECT COUNT(*) FROM local_media") == 0


async def test_config_create_and_upload_to(server: TestServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    for path in (f"{V1}/config", f"{V3}/config"):
        status, body = await server.call("GET", path, alice)
        assert status == 200 and body == {"m.upload.size": 300 * 1024}
    assert (await server.call("GET", f"{V1}/config"))[0] == 401

    status, created = await server.call("POST", "/_matrix/media/v1/create", alice)
    assert status == 200, created
    uri = created["content_uri"]
    assert created["unused_expires_at"] > 0
    target = f"{V3}/upload/{uri[6:]}"

    # Not uploaded yet: the download says so once its wait is over.
    status, body, _ = await fetch(server, f"{V1}/download/{uri[6:]}", alice, timeout_ms="0")
    assert status == 504 and b"M_NOT_YET_UPLOADED" in body

    status, body = await server.call("PUT", target, bob, data=b"bob's", headers={})
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    status, body = await server.call(
        "PUT", target, alice, data=b"hello", headers={"Content-Type": "text/plain"}
    )
    assert status == 200, body
    status, body = await server.call("PUT", target, alice, data=b"again")
    assert status == 409 and body["errcode"] == "M_CANNOT_OVERWRITE_MEDIA"
    status, data, _ = await fetch(server, f"{V1}/download/{uri[6:]}", alice)
    assert status == 200 and data == b"hello"

    unknown = f"{V3}/upload/{server.hs.server_name}/NoSuchMediaIdHere"
    assert (await server.call("PUT", unknown, alice, data=b"x"))[0] == 404
    assert (await server.call("PUT", f"{V3}/upload/other.example/abc", alice, data=b"x"))[0] == 404

    # At most max_pending_media_uploads (5) reservations wait at once.
    answers = [(await server.call("POST", "/_matrix/media/v1/create", bob))[0] for _ in range(6)]
    assert answers == [200] * 5 + [429]


async def test_unknown_and_malformed_media_ids(server: TestServer) -> None:
    alice = await server.register("alice")
    name = server.hs.server_name
    for path in (
        f"{V1}/download/{name}/unknownmedia",
        f"{V1}/download/{name}/..%2F..%2Fetc",
        f"{V1}/download/bad%20server/abc",
        f"{V1}/thumbnail/{name}/unknownmedia?width=32&height=32",
    ):
        status, _, _ = await fetch(server, path, alice)
        assert status == 404, path
    # A server name no resolver can encode (found by the fuzz: it was a 500).
    for target in ("/_matrix/client/v1/media/download/../abc", "/_matrix/media/v3/download/../abc"):
        status, text = await server.call_exact(
            "GET", target, headers={"Authorization": f"Bearer {alice.access_token}"}
        )
        assert status == 404, (target, status, text)


async def test_admin_quarantine_delete_and_room_media(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    alice = await server.register("alice")
    uri = await upload(server, alice, jpeg(64, 64), "image/jpeg")
    other = await upload(server, alice, png(), "image/png")
    name, media_id = uri[6:].split("/")

    # Only admins.
    status, _ = await server.call("POST", f"{ADMIN}/media/quarantine/{name}/{media_id}", alice)
    assert status == 403
    status, _ = await server.call("POST", f"{ADMIN}/media/quarantine/{name}/{media_id}", admin)
    assert status == 200
    assert (await fetch(server, f"{V1}/download/{uri[6:]}", alice))[0] == 404
    status, _ = await server.call("POST", f"{ADMIN}/media/unquarantine/{name}/{media_id}", admin)
    assert (await fetch(server, f"{V1}/download/{uri[6:]}", alice))[0] == 200

    room_id = await create_room(server, alice)
    await server.hs.sender.send(
        room_id,
        EventDraft(
            "m.room.message",
            alice.user_id,
            {
                "msgtype": "m.image",
                "body": "cat",
                "url": uri,
                "info": {"thumbnail_url": "mxc://elsewhere.example/remoteThumb"},
            },
        ),
    )
    status, body = await server.call("GET", f"{ADMIN}/room/{room_id}/media", admin)
    assert status == 200
    assert body == {"local": [uri], "remote": ["mxc://elsewhere.example/remoteThumb"]}
    assert (await server.call("GET", f"{ADMIN}/room/!nope:{name}/media", admin))[0] == 404
    status, body = await server.call("POST", f"{ADMIN}/room/{room_id}/media/quarantine", admin)
    assert status == 200 and body == {"num_quarantined": 2}
    assert (await fetch(server, f"{V1}/download/{uri[6:]}", alice))[0] == 404
    await server.call("POST", f"{ADMIN}/media/unquarantine/{name}/{media_id}", admin)

    _, other_id = other[6:].split("/")
    status, body = await server.call("DELETE", f"{ADMIN}/media/{name}/{other_id}", admin)
    assert status == 200 and body == {"deleted_media": [other_id], "total": 1}
    assert (await fetch(server, f"{V1}/download/{other[6:]}", alice))[0] == 404
    assert (await server.call("DELETE", f"{ADMIN}/media/{name}/{other_id}", admin))[0] == 404
    status, body = await server.call("POST", f"{ADMIN}/purge_media_cache?before_ts=0", admin)
    assert status == 200 and body == {"deleted": 0}
    assert (await server.call("POST", f"{ADMIN}/purge_media_cache", admin))[0] == 400


async def test_purged_room_takes_only_its_own_media(server: TestServer) -> None:
    admin = await server.register("admin", admin=True)
    alice = await server.register("alice")
    only_here = await upload(server, alice, b"only in the purged room", "text/plain")
    shared = await upload(server, alice, b"also named elsewhere", "text/plain")
    doomed = await create_room(server, alice)
    kept = await create_room(server, alice)
    for room_id, uris in ((doomed, (only_here, shared)), (kept, (shared,))):
        for uri in uris:
            await server.hs.sender.send(
                room_id,
                EventDraft(
                    "m.room.message",
                    alice.user_id,
                    {"msgtype": "m.file", "body": "f", "url": uri},
                ),
            )
    status, answer = await server.call(
        "DELETE", f"/_synapse/admin/v2/rooms/{doomed}", admin, json={"force_purge": True}
    )
    assert status == 200, answer
    await server.hs.room_deletion.wait(answer["delete_id"])

    assert (await fetch(server, f"{V1}/download/{only_here[6:]}", alice))[0] == 404
    status, data, _ = await fetch(server, f"{V1}/download/{shared[6:]}", alice)
    assert status == 200 and data == b"also named elsewhere"
    assert len([p for p in media_files(server) if "content" in p.parts]) == 1
