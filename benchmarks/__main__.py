"""``python -m benchmarks <suite> [--quick] [--output FILE] [suite options]``.

Prints the suite's JSON result to stdout and writes it to ``bench-results/<suite>.json`` (and to
``--output`` when given)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import pkgutil
import sys
from pathlib import Path
from types import ModuleType

import benchmarks
from benchmarks._common import run_metadata

RESULTS_DIR = Path("bench-results")


def available_suites() -> list[str]:
    return sorted(
        m.name
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if not m.name.startswith("_") and not m.ispkg
    )


def load_suite(name: str) -> ModuleType:
    module = importlib.import_module(f"benchmarks.{name}")
    if not callable(getattr(module, "run", None)):
        raise SystemExit(f"benchmarks.{name} has no run(args)")
    return module


def build_parser(suites: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Run a benchmark suite; print its JSON result and write it to "
        "bench-results/<suite>.json.",
    )
    parser.add_argument("suite", choices=suites, help="the benchmark suite to run")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a fast check")
    parser.add_argument("--output", type=Path, help="also write the JSON result to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    suites = available_suites()
    parser = build_parser(suites)
    # First pass (no --help yet): find the suite, so its own options join the full parse.
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("suite", nargs="?")
    known, _ = first.parse_known_args(argv)
    if known.suite in suites:
        add_arguments = getattr(load_suite(known.suite), "add_arguments", None)
        if add_arguments is not None:
            add_arguments(parser)
    args = parser.parse_args(argv)
    suite = load_suite(args.suite)

    result = {"suite": args.suite, **run_metadata(), **asyncio.run(suite.run(args))}
    text = json.dumps(result, indent=2)
    print(text)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{args.suite}.json").write_text(text + "\n")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
