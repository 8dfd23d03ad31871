"""Benchmarks run by ``scripts/bench <suite>``: each suite is a module ``benchmarks/<suite>.py``
with an async ``run(args) -> dict`` (and optionally ``add_arguments(parser)`` for its own
options). Results are JSON; benchmarks measure and never assert on time.

Not part of the installed package: run from the repository root (``python -m benchmarks``).
"""
