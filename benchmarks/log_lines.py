"""``scripts/bench log_lines``: what the two lines every createRoom writes cost, in-process.

The access line (``access_log_middleware`` around a handler that answers at once, on one
authenticated ``POST /createRoom`` request made once and reused) and the audit line
(``audit_log_subscriber`` on a ``room.created``) go through logging configured as
``homeserver run`` configures it (``app.configure_logging`` with a ``log_config`` file: context
and redaction filters; four registered literal secrets, as the signing key's seed adds) into a
file, flushed per line. Per format:

* ``json``: ``homeserver.logging.JsonFormatter`` (the default's formatter) to a file;
* ``synapse``: Synapse's generated ``precise`` format, which names ``%(lineno)d``.

Each round logs ``--lines`` access lines, then as many audit lines; the CPU time of this process
per line (``time.process_time``: the machine is shared, wall time is reported beside it) is the
median over ``--rounds``. ``lines_written`` counts the file's lines: every line must be there.
Benchmarks measure; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from homeserver.app import configure_logging
from homeserver.config.log_config import LoggingConfig
from homeserver.http.auth import _REQUESTER_KEY, Requester
from homeserver.http.middleware import access_log_middleware
from homeserver.logging import register_secret
from homeserver.logging.redaction import forget_secrets
from homeserver.logging.setup import all_handlers
from homeserver.rooms.audit import audit_log_subscriber
from homeserver.rooms.bus import ROOM_CREATED, DomainEvent

SERVER = "bench.example.org"
FORMATTERS: dict[str, dict[str, str]] = {
    "json": {"()": "homeserver.logging.JsonFormatter"},
    "synapse": {
        "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s"
    },
}


class _Transport:
    """The peer address is all the access line asks the transport for."""

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("198.51.100.7", 52114) if name == "peername" else default


def _create_room_request() -> web.Request:
    request = make_mocked_request(
        "POST",
        "/_matrix/client/v3/createRoom",
        headers={
            "User-Agent": "Element/1.11.85 (Linux; bench)",
            "Content-Type": "application/json",
        },
        transport=_Transport(),
        app=web.Application(),
    )
    # What ``get_requester`` leaves on the request once the token is checked.
    request[_REQUESTER_KEY] = Requester(f"@alice:{SERVER}", "DEVICEID", False, "hash")
    return request


@contextmanager
def _configured(fmt: str, directory: Path) -> Iterator[Path]:
    """Logging as the server configures it, writing to a file; the previous state afterwards."""
    log_file = directory / f"{fmt}.log"
    config = directory / f"{fmt}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "formatters": {"main": FORMATTERS[fmt]},
                "handlers": {
                    "file": {
                        "class": "logging.FileHandler",
                        "filename": str(log_file),
                        "formatter": "main",
                    }
                },
                "root": {"level": "INFO", "handlers": ["file"]},
            }
        )
    )
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging(LoggingConfig(log_config=config))
        for _ in range(4):  # the seed, standard and URL-safe base64, padded and not
            register_secret(secrets.token_urlsafe(32))
        yield log_file
    finally:
        forget_secrets()
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def _timed(lines: int, log_one: Callable[[], None]) -> tuple[float, float]:
    """CPU and wall seconds for ``lines`` calls."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(lines):
        log_one()
    return time.process_time() - cpu, time.perf_counter() - wall


def _us(seconds: float, lines: int) -> float:
    return round(seconds / lines * 1e6, 2)


async def _measure(fmt: str, lines: int, rounds: int, directory: Path) -> dict[str, Any]:
    request = _create_room_request()
    response = web.Response(status=200)

    async def answer(_: web.Request) -> web.StreamResponse:
        return response

    event = DomainEvent(
        ROOM_CREATED,
        {
            "room_id": f"!{secrets.token_urlsafe(18)}:{SERVER}",
            "creator_id": f"@alice:{SERVER}",
            "preset": "private_chat",
            "room_version": "10",
        },
    )
    samples: dict[str, list[tuple[float, float]]] = {"access": [], "audit": []}
    with _configured(fmt, directory) as log_file:
        for _ in range(rounds):
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(lines):
                await access_log_middleware(request, answer)
            samples["access"].append((time.process_time() - cpu, time.perf_counter() - wall))
            samples["audit"].append(_timed(lines, lambda: audit_log_subscriber(event)))
        for handler in all_handlers():
            handler.flush()
        written = sum(1 for _ in log_file.open(encoding="utf-8"))
    result: dict[str, Any] = {"lines_written": written, "lines_expected": 2 * lines * rounds}
    for kind, measured in samples.items():
        result[kind] = {
            "cpu_us_per_line": _us(statistics.median(c for c, _ in measured), lines),
            "wall_us_per_line": _us(statistics.median(w for _, w in measured), lines),
            "cpu_us_per_line_min": _us(min(c for c, _ in measured), lines),
        }
    result["cpu_us_per_line"] = round(
        (result["access"]["cpu_us_per_line"] + result["audit"]["cpu_us_per_line"]) / 2, 2
    )
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("log_lines")
    group.add_argument("--lines", type=int, default=20_000, help="lines of each kind per round")
    group.add_argument("--rounds", type=int, default=7, help="rounds; the median is reported")
    group.add_argument(
        "--formats",
        default=",".join(FORMATTERS),
        type=lambda v: [f for f in v.split(",") if f],
        help=f"comma-separated subset of {','.join(FORMATTERS)}",
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        args.lines, args.rounds = 500, 2
    unknown = sorted(set(args.formats) - set(FORMATTERS))
    if unknown:
        raise SystemExit(f"unknown formats {unknown}; choose from {sorted(FORMATTERS)}")
    with tempfile.TemporaryDirectory(prefix="homeserver-bench-logs-") as tmp:
        formats = {
            fmt: await _measure(fmt, args.lines, args.rounds, Path(tmp)) for fmt in args.formats
        }
    return {
        "parameters": {"lines": args.lines, "rounds": args.rounds, "formats": args.formats},
        "formats": formats,
    }
