"""``scripts/bench push`` runs end to end on a tiny room (SQLite) and reports every figure it
promises. Nothing here looks at how fast anything was."""

from __future__ import annotations

import json

from benchmarks.__main__ import available_suites, build_parser
from benchmarks.push import add_arguments, run


async def test_push_benchmark_tiny_sqlite() -> None:
    assert "push" in available_suites()
    parser = build_parser(available_suites())
    add_arguments(parser)
    args = parser.parse_args(
        ["push", "--engines=sqlite", "--members=6", "--messages=2", "--pushers=2"]
    )
    result = await run(args)
    json.dumps(result)
    sqlite = result["engines"]["sqlite"]
    # Every member but the sender is notified (creator included); two pushers, one job each
    # unless its owner sent the message.
    assert sqlite["actions_per_event"] == 6
    assert 1 <= sqlite["pusher_jobs_per_event"] <= 2
    for part in ("persist", "evaluate"):
        assert sqlite[part]["median_ms"] >= 0 and sqlite[part]["p90_ms"] >= 0
