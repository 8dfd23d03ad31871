"""Media with a real Synapse over federation: a Synapse user downloads (and thumbnails) our
user's image, fetched by Synapse through our ``/_matrix/federation/v1/media/*``; our user
downloads (and thumbnails) the Synapse user's image, fetched by us from Synapse's. One Synapse
for the module; our server on each engine."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from tests.federation.cs_client import register_with_shared_secret
from tests.federation.interop_peer import OurServer, running_our_server
from tests.federation.synapse_harness import SynapseServer, diagnostics, running_synapse

ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
WAIT = float(os.environ.get("INTEROP_TIMEOUT", "60"))
V1 = "/_matrix/client/v1/media"


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    with running_synapse(tmp_path_factory.mktemp("synapse-media")) as server:
        yield server


@pytest.fixture(params=ENGINES)
async def ours(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OurServer]:
    async with running_our_server(tmp_path / "ours", request.param) as server:
        yield server


def image(kind: str, size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, kind)
    return out.getvalue()


async def upload(
    session: aiohttp.ClientSession, base: str, token: str, data: bytes, media_type: str
) -> str:
    async with session.post(
        f"{base}/_matrix/media/v3/upload?filename=picture",
        data=data,
        headers={"Authorization": f"Bearer {token}", "Content-Type": media_type},
    ) as response:
        body = await response.json()
        assert response.status == 200, body
    return str(body["content_uri"]).removeprefix("mxc://")


async def get(
    session: aiohttp.ClientSession, url: str, token: str, **params: str
) -> tuple[int, bytes, str]:
    async with session.get(
        url, headers={"Authorization": f"Bearer {token}"}, params=params or None
    ) as response:
        return response.status, await response.read(), response.headers.get("Content-Type", "")


async def test_images_cross_between_us_and_synapse(ours: OurServer, synapse: SynapseServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        diagnostics(ours, synapse),
        asyncio.timeout(2 * WAIT),
    ):
        _, alice = await register_with_shared_secret(
            session, ours.client_url, ours.registration_secret, f"alice_{ours.engine}"
        )
        _, bob = await register_with_shared_secret(
            session, synapse.client_url, synapse.registration_secret, f"bob_{ours.engine}"
        )
        ours_jpeg = image("JPEG", (300, 200), (200, 10, 10))
        theirs_png = image("PNG", (120, 90), (10, 10, 200))
        our_path = await upload(session, ours.client_url, alice, ours_jpeg, "image/jpeg")
        their_path = await upload(session, synapse.client_url, bob, theirs_png, "image/png")

        # The Synapse user reads our user's image through Synapse.
        status, body, content_type = await get(
            session, f"{synapse.client_url}{V1}/download/{our_path}", bob
        )
        assert (status, content_type) == (200, "image/jpeg") and body == ours_jpeg
        status, body, _ = await get(
            session,
            f"{synapse.client_url}{V1}/thumbnail/{our_path}",
            bob,
            width="32",
            height="32",
            method="crop",
        )
        assert status == 200 and Image.open(io.BytesIO(body)).size == (32, 32)

        # Our user reads the Synapse user's image through us.
        status, body, content_type = await get(
            session, f"{ours.client_url}{V1}/download/{their_path}", alice
        )
        assert (status, content_type) == (200, "image/png") and body == theirs_png
        status, body, _ = await get(
            session,
            f"{ours.client_url}{V1}/thumbnail/{their_path}",
            alice,
            width="96",
            height="96",
            method="crop",
        )
        assert status == 200 and Image.open(io.BytesIO(body)).size == (96, 90)
