"""The follow part of ``scripts/bench federation`` runs end to end on tiny sizes (SQLite only)
and reports its figure for each N. Benchmarks measure; nothing here looks at how fast."""

from __future__ import annotations

from pathlib import Path

from benchmarks import _upgrade_follow as upgrade_follow
from tests.conftest import POSTGRES_DSN


async def test_follow_benchmark_tiny_sqlite(tmp_path: Path) -> None:
    result = await upgrade_follow.measure("sqlite", POSTGRES_DSN, tmp_path, (1, 3))
    assert set(result) == {"1", "3"}
    for n, figures in result.items():
        assert figures["users"] == int(n)
        assert isinstance(figures["tombstone_arrival_to_all_joined_ms"], int)
        assert figures["tombstone_arrival_to_all_joined_ms"] >= 0
