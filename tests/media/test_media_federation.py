"""Media over federation, both engines: a user of one of our servers downloads (and
thumbnails) a user of another's upload over real HTTPS, the copy is cached; other servers must
sign their requests; a hostile origin's oversized, malformed or redirected answers are refused
without caching anything."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from PIL import Image

from homeserver.app import Homeserver
from homeserver.crypto.signing import generate_signing_key
from homeserver.errors import MatrixError
from homeserver.storage import Store
from tests.federation.fake_remote import FakeRemoteServer, ReceivedRequest, federation_test_config
from tests.federation.h4_helpers import second_store, two_servers

__all__ = ["second_store"]  # the fixture

V1 = "/_matrix/client/v1/media"


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (400, 300), (10, 120, 10)).save(out, "JPEG")
    return out.getvalue()


async def get(
    session: aiohttp.ClientSession, url: str, token: str | None = None, **params: str
) -> tuple[int, bytes, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.get(url, headers=headers, params=params or None) as response:
        return response.status, await response.read(), response.headers


async def test_a_user_of_one_server_downloads_anothers_image(
    tmp_path: Path, store: Store, second_store: Store
) -> None:
    async with two_servers(tmp_path, store, second_store) as (a, b):
        alice = await a.user("alice")
        bob = await b.user("bob")
        data = jpeg()
        async with a.session.post(
            f"{a.base_url}/_matrix/media/v3/upload?filename=leaf.jpg",
            data=data,
            headers={"Authorization": f"Bearer {alice.access_token}", "Content-Type": "image/jpeg"},
        ) as response:
            assert response.status == 200
            uri = (await response.json())["content_uri"]
        path = uri.removeprefix("mxc://")
        media_id = path.split("/")[1]

        status, body, headers = await get(
            a.session, f"{b.base_url}{V1}/download/{path}", bob.access_token
        )
        assert status == 200 and body == data
        assert headers["Content-Type"] == "image/jpeg"
        assert headers["Content-Disposition"] == 'inline; filename="leaf.jpg"'
        cached = await b.hs.store.media.get_remote(a.name, media_id)
        assert cached is not None and cached.media_length == len(data) and cached.authenticated

        status, body, _ = await get(
            a.session,
            f"{b.base_url}{V1}/thumbnail/{path}",
            bob.access_token,
            width="96",
            height="96",
            method="crop",
        )
        assert status == 200 and Image.open(io.BytesIO(body)).size == (96, 96)

        # Served from B's cache from now on, even once A has deleted it.
        assert await a.hs.media.delete_local(media_id)
        status, body, _ = await get(
            a.session, f"{b.base_url}{V1}/download/{path}", bob.access_token
        )
        assert status == 200 and body == data
        # ... but not to an anonymous client on the legacy path (authenticated media).
        status, _, _ = await get(a.session, f"{b.base_url}/_matrix/media/v3/download/{path}")
        assert status == 404

        # B's admin quarantines the cached copy: refused from then on.
        await b.hs.media.set_quarantine(a.name, media_id, "@admin:b")
        status, _, _ = await get(a.session, f"{b.base_url}{V1}/download/{path}", bob.access_token)
        assert status == 404
        await b.hs.media.set_quarantine(a.name, media_id, None)

        # A no longer has it: B answers 404 for another ID A does not know.
        status, _, _ = await get(
            a.session, f"{b.base_url}{V1}/download/{a.name}/NoSuchMedia", bob.access_token
        )
        assert status == 404

        # The federation API wants a signed request.
        status, _, _ = await get(
            a.session, f"{a.base_url}/_matrix/federation/v1/media/download/{media_id}"
        )
        assert status == 401


def _multipart(boundary: str, media: bytes, extra_headers: str = "") -> bytes:
    return (
        f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n"
        f"--{boundary}\r\n{extra_headers}Content-Type: text/html\r\n\r\n".encode()
        + media
        + f"\r\n--{boundary}--\r\n".encode()
    )


async def test_hostile_origins_answers_are_refused_and_not_cached(
    tmp_path: Path, store: Store
) -> None:
    hs = Homeserver(
        federation_test_config(tmp_path / "us", max_upload_size="10K"),
        generate_signing_key("us"),
        store,
    )
    async with FakeRemoteServer(tmp_path / "remote") as remote:

        async def answer(request: ReceivedRequest) -> web.StreamResponse:
            media_id = request.params["media_id"]
            boundary = "b0undary"
            content_type = f"multipart/mixed; boundary={boundary}"
            if media_id == "big":
                body = _multipart(boundary, b"x" * 20_000)
            elif media_id == "small":
                body = _multipart(boundary, b"<html>ok</html>")
            elif media_id == "notmultipart":
                return web.Response(body=b"plain", content_type="text/plain")
            elif media_id == "redirect":
                body = _multipart(boundary, b"", "Location: https://127.0.0.1:1/x\r\n")
            else:
                body = b"--b0undary\r\nContent-Type: application/json\r\n\r\n[1, 2"
            return web.Response(body=body, headers={"Content-Type": content_type})

        remote.add_handler("GET", "/_matrix/federation/v1/media/download/{media_id}", answer)
        try:
            fetched = await hs.media.download(remote.server_name, "small", authenticated=True)
            assert fetched.path.read_bytes() == b"<html>ok</html>"
            assert fetched.media_type == "text/html"  # served as an attachment (headers.py)
            # Bad answers are 502; a redirect to where nothing listens is as good as no media.
            expected = {"big": 502, "notmultipart": 502, "redirect": 404, "broken": 502}
            for media_id, status in expected.items():
                try:
                    await hs.media.download(remote.server_name, media_id, authenticated=True)
                except MatrixError as e:
                    assert e.status == status, (media_id, e.status)
                else:
                    raise AssertionError(f"{media_id} was accepted")
                assert await hs.store.media.get_remote(remote.server_name, media_id) is None
            # The redirect pointed at a port nobody serves; the oversized body was cut off.
            tmp_files = list((hs.config.media.media_store_path / "tmp").iterdir())
            assert tmp_files == []
        finally:
            await hs.federation_client.close()
