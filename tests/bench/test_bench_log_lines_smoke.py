"""The log-lines benchmark runs end to end on tiny sizes and reports every figure it promises,
with every line written. Nothing here looks at how fast anything was."""

from __future__ import annotations

import json
import logging

from benchmarks.__main__ import available_suites, build_parser
from benchmarks.log_lines import FORMATTERS, add_arguments, run


async def test_log_lines_benchmark_tiny() -> None:
    assert "log_lines" in available_suites()
    parser = build_parser(available_suites())
    add_arguments(parser)
    root = logging.getLogger()
    handlers = root.handlers[:]
    result = await run(parser.parse_args(["log_lines", "--lines=50", "--rounds=2"]))
    json.dumps(result)
    assert root.handlers == handlers  # the run's logging configuration did not outlive it
    assert set(result["formats"]) == set(FORMATTERS)
    for fmt, figures in result["formats"].items():
        assert figures["lines_written"] == figures["lines_expected"] == 200, fmt
        for kind in ("access", "audit"):
            assert figures[kind]["cpu_us_per_line"] > 0, (fmt, kind)
            assert figures[kind]["wall_us_per_line"] > 0, (fmt, kind)
