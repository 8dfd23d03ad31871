"""The e2e benchmark runs end to end on tiny counts (our server on SQLite, no Synapse) and reports
every figure it promises. Benchmarks measure; nothing here looks at how fast anything was."""

from __future__ import annotations

import argparse
import json

from benchmarks.__main__ import available_suites, build_parser
from benchmarks.e2e import HEADLINES, add_arguments, run, sizes


def tiny_args(*extra: str) -> argparse.Namespace:
    parser = build_parser(available_suites())
    add_arguments(parser)
    return parser.parse_args(["e2e", "--quick", "--engines=sqlite", "--no-synapse", *extra])


def positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def test_e2e_suite_is_discovered_and_clamps_its_counts():
    assert "e2e" in available_suites()
    n = sizes(tiny_args("--users=3", "--claim-users=10", "--otks=2", "--claims=9"))
    # Claimed devices are the users other than the claimer; claims stop at the keys uploaded.
    assert (n["users"], n["claim_users"], n["otks"], n["claims"]) == (3, 2, 2, 4)


async def test_e2e_benchmark_tiny_sqlite():
    args = tiny_args()
    n = sizes(args)
    result = await run(args)
    json.dumps(result)  # plain JSON
    assert set(result["engines"]) == {"sqlite"}
    assert "synapse" not in result
    ours = result["engines"]["sqlite"]
    assert "error" not in ours, ours.get("error")
    assert ours["server_tracebacks"] == 0

    assert ours["upload"]["requests"] == n["users"]
    assert ours["upload_top_up"]["requests"] == n["users"]
    assert ours["claim"]["requests"] == n["claims"]
    assert ours["claim"]["devices_per_request"] == n["claim_users"]
    assert ours["query"]["users_per_query"] == n["users"]
    assert ours["to_device_latency"]["messages"] == n["messages"]
    throughput = ours["to_device_throughput"]
    assert throughput["delivered"] == throughput["sent"] == n["throughput_messages"]

    summary = result["summary"]["ours_sqlite"]
    assert set(summary) == {name for name, _, _ in HEADLINES}
    for name, value in summary.items():
        assert positive(value), name
    assert result["ratio"] == {}
