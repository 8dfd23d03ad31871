"""The core benchmark runs end to end on a tiny configuration (SQLite only) and reports every
number it promises. Benchmarks measure; nothing here looks at how fast anything was."""

from __future__ import annotations

import argparse
import json

from benchmarks.__main__ import available_suites, build_parser
from benchmarks.core import add_arguments, params_from_args, run


def tiny_args() -> argparse.Namespace:
    parser = build_parser(available_suites())
    add_arguments(parser)
    return parser.parse_args(
        [
            "core",
            "--quick",
            "--engines=sqlite",
            "--events=20",
            "--batches=2",
            "--members=50",
            "--reads=2",
        ]
    )


def positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def test_core_suite_is_discovered():
    assert "core" in available_suites()
    params = params_from_args(tiny_args())
    assert params.engines == ("sqlite",)
    assert (params.build_events, params.persist_batches, params.members) == (20, 2, 50)


async def test_core_benchmark_tiny_sqlite():
    result = await run(tiny_args())
    json.dumps(result)  # plain JSON, no infinities or custom objects
    assert result["parameters"]["engines"] == ["sqlite"]

    build = result["build"]
    assert build["events"] == 20
    for key in ("events_per_second", "per_event_us"):
        assert positive(build[key]), key
    for key in ("content_hash", "sign", "validate", "event_id", "auth"):
        assert positive(build["breakdown_us"][key]), key

    assert set(result["engines"]) == {"sqlite"}
    sqlite = result["engines"]["sqlite"]
    persist = sqlite["persist"]
    assert (persist["batches"], persist["batch_size"], persist["events"]) == (2, 10, 20)
    for key in ("events_per_second", "batches_per_second"):
        assert positive(persist[key]), key
    assert positive(persist["batch_latency"]["median_ms"])

    big = sqlite["big_room"]
    assert big["members"] == 50
    # creator + 50 joiners + create, power levels, join rules, history visibility, name, topic
    assert big["state_size"] == 57
    storage = big["state_storage"]
    assert storage["state_events"] == 57
    assert storage["snapshot_groups"] >= 1
    # Group p stores its delta against the group at p - lowbit(p): at most 32 rows for 58 groups.
    assert 1 <= storage["delta_rows_max"] <= 32
    assert 1 <= storage["max_base_chain_length"] <= 6
    for key in ("rows_total", "rows_per_state_event", "max_rows_in_one_group"):
        assert positive(storage[key]), key
    reads = big["reads"]
    for name in ("state_at_mid_event", "state_at_last_event", "current_state"):
        assert positive(reads[name]["cold_median_ms"]), name
        assert positive(reads[name]["state_size"]), name
    assert reads["state_at_last_event"]["state_size"] == 57
    assert reads["current_state"]["state_size"] == 57
