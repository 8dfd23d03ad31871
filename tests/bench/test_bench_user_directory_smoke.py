"""The user_directory benchmark runs end to end on a few users (SQLite) and reports every figure
it promises; the default visibility leaves out the users in no room. Nothing here looks at how
fast anything was."""

from __future__ import annotations

import json

from benchmarks.__main__ import available_suites, build_parser
from benchmarks.user_directory import TERMS, add_arguments, run


async def test_user_directory_benchmark_quick_sqlite() -> None:
    assert "user_directory" in available_suites()
    parser = build_parser(available_suites())
    add_arguments(parser)
    args = parser.parse_args(["user_directory", "--quick", "--engines=sqlite", "--users=60"])
    result = await run(args)
    json.dumps(result)
    sqlite = result["engines"]["sqlite"]
    assert sqlite["users_per_s"] > 0 and sqlite["joins_per_s"] > 0
    for mode in ("default_visibility", "search_all_users"):
        for name in TERMS:
            assert sqlite[mode][name]["median_ms"] > 0, (mode, name)
        assert sqlite[mode]["no_match"]["results"] == 0
    # 29 of the 59 other users joined the searcher's room (the others are in none).
    default = sqlite["default_visibility"]
    assert sqlite["joined_to_the_searchers_room"] == 29
    assert default["prefix_one_letter"]["results"] > 0
