"""``scripts/bench media``: the media repository of a real ``homeserver run`` process on each
engine: upload and download throughput (MB/s) and thumbnail time for a 2 MB JPEG.

Per engine: a fresh server (``_server.bench_server``), one user registered through the client
API, then ``--rounds`` uploads of a JPEG of about 2 MB (random pixels, so the bytes do not
compress and each round's image is distinct), a download of each through
``/_matrix/client/v1/media/download``, and per round one thumbnail of each configured size (the
first request of a size makes it; a second request of the same size is served from disk).
"""

from __future__ import annotations

import argparse
import io
import os
import time
from typing import Any

import aiohttp
from PIL import Image

from benchmarks._common import latency_summary, measure_engines, parse_engines
from benchmarks._server import bench_server

TARGET_BYTES = 2 * 1024 * 1024
SIZES = [(32, 32, "crop"), (96, 96, "crop"), (320, 240, "scale"), (640, 480, "scale")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engines", default="sqlite,postgres", type=parse_engines)
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get(
            "HOMESERVER_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--rounds", type=int, default=10)


def make_jpeg(seed: int) -> bytes:
    """A JPEG of about 2 MB: random pixels (incompressible), sized to land near the target."""
    side = 1200
    while True:
        noise = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
        out = io.BytesIO()
        noise.save(out, "JPEG", quality=85)
        data = out.getvalue()
        if len(data) >= TARGET_BYTES * 0.95 or side > 4000:
            return data
        side = int(side * (TARGET_BYTES / len(data)) ** 0.5) + 8 + seed % 2


async def _register(session: aiohttp.ClientSession, base: str) -> str:
    body: dict[str, Any] = {"username": f"bench{os.getpid()}", "password": "bench-password-1"}
    async with session.post(f"{base}/_matrix/client/v3/register", json=body) as response:
        first = await response.json()
    body["auth"] = {"type": "m.login.dummy", "session": first.get("session")}
    async with session.post(f"{base}/_matrix/client/v3/register", json=body) as response:
        answer = await response.json()
        if response.status != 200:
            raise RuntimeError(f"register failed: {answer}")
    return str(answer["access_token"])


async def _measure(args: argparse.Namespace, engine: str) -> dict[str, Any]:
    images = [make_jpeg(i) for i in range(args.rounds)]
    async with bench_server(engine, args.postgres_dsn, "media") as server:
        base = server.base_url
        async with aiohttp.ClientSession() as session:
            token = await _register(session, base)
            auth = {"Authorization": f"Bearer {token}"}
            uploads: list[float] = []
            downloads: list[float] = []
            first_thumbs: list[float] = []
            cached_thumbs: list[float] = []
            for data in images:
                start = time.perf_counter()
                async with session.post(
                    f"{base}/_matrix/media/v3/upload",
                    data=data,
                    headers={**auth, "Content-Type": "image/jpeg"},
                ) as response:
                    uri = (await response.json())["content_uri"]
                uploads.append(time.perf_counter() - start)
                path = uri.removeprefix("mxc://")
                start = time.perf_counter()
                async with session.get(
                    f"{base}/_matrix/client/v1/media/download/{path}", headers=auth
                ) as response:
                    got = await response.read()
                downloads.append(time.perf_counter() - start)
                assert got == data
                for width, height, method in SIZES:
                    for bucket in (first_thumbs, cached_thumbs):
                        start = time.perf_counter()
                        async with session.get(
                            f"{base}/_matrix/client/v1/media/thumbnail/{path}",
                            params={"width": str(width), "height": str(height), "method": method},
                            headers=auth,
                        ) as response:
                            await response.read()
                            assert response.status == 200
                        bucket.append(time.perf_counter() - start)
    total_mb = sum(len(d) for d in images) / 1e6
    return {
        "engine": engine,
        "rounds": len(images),
        "jpeg_bytes_mean": round(sum(len(d) for d in images) / len(images)),
        "upload_mb_per_s": round(total_mb / sum(uploads), 1),
        "download_mb_per_s": round(total_mb / sum(downloads), 1),
        "upload": latency_summary(uploads),
        "download": latency_summary(downloads),
        "thumbnail_generated": latency_summary(first_thumbs),
        "thumbnail_cached": latency_summary(cached_thumbs),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        args.rounds = 2
    return {"engines": await measure_engines(args, _measure)}
