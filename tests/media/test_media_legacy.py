"""With ``enable_authenticated_media: false`` the legacy ``/_matrix/media/v3`` (and ``r0``)
download and thumbnail paths serve media to anyone, as Synapse; uploads still need a token.
Both engines."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from homeserver.config import HomeserverConfig
from tests.builders import generous_config
from tests.harness import TestServer


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path, enable_authenticated_media=False)


async def test_legacy_paths_serve_unauthenticated_media(server: TestServer) -> None:
    alice = await server.register("alice")
    out = io.BytesIO()
    Image.new("RGB", (50, 40), (1, 2, 3)).save(out, "PNG")
    data = out.getvalue()
    assert (await server.call("POST", "/_matrix/media/v3/upload", None, data=data))[0] == 401
    status, body = await server.call(
        "POST", "/_matrix/media/r0/upload", alice, data=data, headers={"Content-Type": "image/png"}
    )
    assert status == 200, body
    path = body["content_uri"][6:]
    for prefix in ("/_matrix/media/v3", "/_matrix/media/r0"):
        response = await server.client.get(f"{prefix}/download/{path}")
        assert response.status == 200 and await response.read() == data
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        response = await server.client.get(
            f"{prefix}/thumbnail/{path}", params={"width": "32", "height": "32"}
        )
        assert response.status == 200
        # scale: the smallest configured scale size covering 32x32 is 320x240, never upscaled.
        assert Image.open(io.BytesIO(await response.read())).size == (50, 40)
    # The authenticated path still wants a token.
    response = await server.client.get(f"/_matrix/client/v1/media/download/{path}")
    assert response.status == 401
