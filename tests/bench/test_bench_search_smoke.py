"""The search benchmark runs end to end on tiny sizes (SQLite) and reports every figure it
promises. Nothing here looks at how fast anything was."""

from __future__ import annotations

import json

from benchmarks.__main__ import available_suites, build_parser
from benchmarks.search import add_arguments, run


async def test_search_benchmark_tiny_sqlite() -> None:
    assert "search" in available_suites()
    parser = build_parser(available_suites())
    add_arguments(parser)
    args = parser.parse_args(["search", "--engines=sqlite", "--messages=300", "--reads=1"])
    result = await run(args)
    json.dumps(result)
    sqlite = result["engines"]["sqlite"]
    assert sqlite["persist_and_index_seconds"] > 0
    queries = sqlite["queries"]
    for name in ("rare", "common", "frequent"):
        for order_by in ("rank", "recent"):
            figure = queries[f"{name}_{order_by}"]
            assert figure["median_ms"] > 0 and figure["count"] >= figure["results"], name
    # Every message was indexed: the most frequent word fills a page and has more to come.
    assert queries["frequent_recent"]["results"] == 10
    assert queries["next_page_recent"]["results"] == 10
    assert queries["with_context_recent"]["results"] == 10
