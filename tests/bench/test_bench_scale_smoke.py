"""``scripts/bench scale`` runs end to end on a tiny load (one process: the cluster's machinery
is the three-process tests' own, tests/multiprocess/) and reports every figure it promises
(rates, the wake-up, CPU per operation of the server and of PostgreSQL, the projection).
Nothing here looks at how fast anything was."""

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


def test_projection_says_when_a_phase_measured_no_cpu() -> None:
    # CPU time comes in 10 ms ticks: six quick operations can read as none.
    figures = {"server_cpu_ms_per_op_total": 1.5, "postgres_cpu_ms_per_op": 0.0}
    (line,) = projection([{"send_rooms": figures}], postgres_cores=2)
    assert line.startswith("send_rooms: too little CPU measured to project"), line


@pytest.mark.postgres
async def test_scale_benchmark_tiny() -> None:
    assert "scale" in available_suites()
    parser = build_parser(available_suites())
    add_arguments(parser)
    args = parser.parse_args(
        [
            "scale",
            "--processes=1",
            "--rooms=6",
            "--messages=6",
            "--concurrency=3",
            "--wake-samples=2",
        ]
    )
    result = await run(args)
    json.dumps(result)
    (one,) = result["results"]
    assert one["processes"] == 1
    for phase in ("create_room", "send_rooms", "send_one_room"):
        figures = one[phase]
        assert figures["operations"] == 6 and figures["per_s"] > 0, figures
        assert set(figures["server_cpu_ms_per_op"]) == {"proc0"}, figures
        assert figures["server_cpu_ms_per_op_total"] > 0, figures
        assert figures["postgres_backends"] > 0, figures
        assert isinstance(figures["lock_wait"], dict), figures
    wake = one["wake_up"]
    assert wake["samples"] == 2 and wake["median_ms"] > 0 and not wake["cross_process"], wake
    assert one["requests_per_process"]["proc0"] > 0, one
    # One line per phase: its projection, or that it measured too little CPU to make one.
    phases = [line.split(":", 1)[0] for line in result["projection"]]
    assert phases == ["create_room", "send_rooms", "send_one_room"], result["projection"]
