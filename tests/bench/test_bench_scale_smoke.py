"""``scripts/bench scale`` runs end to end on a tiny load with two processes and reports every
figure it promises (rates, the cross-process wake-up, CPU per operation of the servers and of
PostgreSQL, the projection). Nothing here looks at how fast anything was."""

from __future__ import annotations

import json
import os

import pytest

from benchmarks.__main__ import available_suites, build_parser
from benchmarks.scale import add_arguments, cpu_seconds, projection, run


def test_cpu_seconds_reads_this_process_and_not_a_missing_one() -> None:
    assert cpu_seconds(1 << 30) is None
    started = cpu_seconds(os.getpid())
    assert started is not None and started > 0  # pytest's own start-up


def test_projection_is_capped_by_postgres() -> None:
    figures = {"server_cpu_ms_per_op_total": 10.0, "postgres_cpu_ms_per_op": 5.0}
    (line,) = projection([{"create_room": figures}], postgres_cores=2)
    # one process: 100/s; PostgreSQL on 2 cores: 400/s, reached with 4 processes
    assert "1: 100/s" in line and "2: 200/s" in line and "8: 400/s" in line, line
    assert "saturates at 400/s, reached with 4.0 processes" in line, line


@pytest.mark.postgres
async def test_scale_benchmark_two_processes_tiny() -> None:
    assert "scale" in available_suites()
    parser = build_parser(available_suites())
    add_arguments(parser)
    args = parser.parse_args(
        [
            "scale",
            "--processes=2",
            "--rooms=6",
            "--messages=6",
            "--concurrency=3",
            "--wake-samples=2",
        ]
    )
    result = await run(args)
    json.dumps(result)
    (two,) = result["results"]
    assert two["processes"] == 2
    for phase in ("create_room", "send_rooms", "send_one_room"):
        figures = two[phase]
        assert figures["operations"] == 6 and figures["per_s"] > 0, figures
        assert set(figures["server_cpu_ms_per_op"]) == {"proc0", "proc1"}, figures
        assert figures["postgres_backends"] > 0, figures
        assert isinstance(figures["lock_wait"], dict), figures
    assert two["wake_up"]["samples"] == 2 and two["wake_up"]["median_ms"] > 0
    # round robin: both processes served requests
    assert all(n > 0 for n in two["requests_per_process"].values()), two
    assert len(result["projection"]) == 3, result["projection"]
