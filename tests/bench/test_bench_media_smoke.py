"""The media benchmark runs end to end against a real ``homeserver run`` on a tiny
configuration (SQLite, one round) and reports every number it promises. Nothing here looks at
how fast anything was."""

from __future__ import annotations

import json

from benchmarks.__main__ import available_suites, build_parser
from benchmarks.media import add_arguments, run


def positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


async def test_media_benchmark_tiny_sqlite() -> None:
    assert "media" in available_suites()
    parser = build_parser(available_suites())
    add_arguments(parser)
    args = parser.parse_args(["media", "--engines=sqlite", "--rounds=1"])
    result = await run(args)
    json.dumps(result)
    sqlite = result["engines"]["sqlite"]
    assert sqlite["rounds"] == 1 and sqlite["jpeg_bytes_mean"] > 1_900_000
    for key in ("upload_mb_per_s", "download_mb_per_s"):
        assert positive(sqlite[key]), key
    for key in ("upload", "download", "thumbnail_generated", "thumbnail_cached"):
        assert positive(sqlite[key]["median_ms"]), key
