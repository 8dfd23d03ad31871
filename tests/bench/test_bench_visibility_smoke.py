"""The visibility benchmark runs end to end in ``--quick`` mode against a real server process
(SQLite) and reports every figure it promises. Nothing here looks at how fast anything was."""

from __future__ import annotations

import json

from benchmarks.__main__ import available_suites, build_parser
from benchmarks.visibility import add_arguments, run


def positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


async def test_visibility_benchmark_quick_sqlite():
    assert "visibility" in available_suites()
    parser = build_parser(available_suites())
    add_arguments(parser)
    args = parser.parse_args(["visibility", "--quick", "--engines=sqlite"])
    result = await run(args)
    json.dumps(result)  # plain JSON
    events, page = result["parameters"]["events"], result["parameters"]["page"]
    sqlite = result["engines"]["sqlite"]
    # bob joined before every message: he sees the whole page and every sent event.
    assert sqlite["messages_page_events"] == page
    assert sqlite["room_events_seen_by_sync"] >= events
    for figure in ("messages", "sync_initial", "sync_initial_default"):
        assert positive(sqlite[figure]["median_ms"]), figure
    assert set(result["summary"]["sqlite"]) == {
        "messages_median_ms",
        "sync_initial_median_ms",
        "sync_initial_default_median_ms",
    }
