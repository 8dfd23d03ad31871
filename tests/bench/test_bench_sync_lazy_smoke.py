"""The sync_lazy benchmark runs end to end on a small room (SQLite) and reports every figure it
promises; lazy loading sends fewer member events than the full sync. Nothing here looks at how
fast anything was."""

from __future__ import annotations

import json

from benchmarks.__main__ import available_suites, build_parser
from benchmarks.sync_lazy import add_arguments, run


def positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


async def test_sync_lazy_benchmark_quick_sqlite():
    assert "sync_lazy" in available_suites()
    parser = build_parser(available_suites())
    add_arguments(parser)
    args = parser.parse_args(
        ["sync_lazy", "--quick", "--engines=sqlite", "--members=40", "--messages=5", "--limit=10"]
    )
    result = await run(args)
    json.dumps(result)
    sqlite = result["engines"]["sqlite"]
    full, lazy = sqlite["full"], sqlite["lazy"]
    for mode in (full, lazy):
        for figure in ("cold_median_ms", "warm_median_ms", "bytes"):
            assert positive(mode[figure]), figure
        assert mode["timeline_events"] == 10
    # Everyone's member event without lazy loading; with it, the creator and the 5 senders.
    assert full["member_events_in_state"] == 41 - 5
    assert lazy["member_events_in_state"] == 6
    assert lazy["bytes"] < full["bytes"]
