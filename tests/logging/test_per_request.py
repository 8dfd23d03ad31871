"""The per-request logger makes the record ``Logger.log`` makes, caller and all, and every line
still goes through the filters (redaction above all)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from homeserver.logging.per_request import PerRequestLogger
from homeserver.logging.redaction import forget_secrets
from homeserver.logging.setup import LoggingSetup, all_handlers
from tests.logging.test_redaction import CASES

NAME = "tests.per_request"
#: set when a record is made; they cannot be equal between two records.
_WHEN = {"created", "msecs", "relativeCreated"}


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept() -> Iterator[_Keep]:
    handler = _Keep()
    logger = logging.getLogger(NAME)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


def _both_ways(lines: PerRequestLogger) -> None:
    lines.log(logging.WARNING, "id %s of %d", "x", 3)
    lines.logger.log(logging.WARNING, "id %s of %d", "x", 3)
    lines.info("plain")
    lines.logger.info("plain")


def test_records_are_those_logger_log_makes_caller_included(kept: _Keep) -> None:
    _both_ways(PerRequestLogger(NAME))
    ours, theirs = kept.records[0::2], kept.records[1::2]
    assert len(ours) == len(theirs) == 2
    for mine, reference in zip(ours, theirs, strict=True):
        assert (mine.pathname, mine.filename, mine.module, mine.funcName) == (
            __file__,
            "test_per_request.py",
            "test_per_request",
            "_both_ways",
        )
        assert mine.lineno == reference.lineno - 1  # the line above the reference's
        mine_fields = {k: v for k, v in vars(mine).items() if k not in _WHEN | {"lineno"}}
        their_fields = {k: v for k, v in vars(reference).items() if k not in _WHEN | {"lineno"}}
        assert mine_fields == their_fields


def test_a_level_not_logged_makes_no_record(kept: _Keep) -> None:
    lines = PerRequestLogger(NAME)
    lines.logger.setLevel(logging.WARNING)
    lines.info("not %s", "shown")
    lines.log(logging.DEBUG, "nor this")
    lines.log(logging.ERROR, "but this")
    assert [r.getMessage() for r in kept.records] == ["but this"]


@pytest.fixture
def _restore_root() -> Iterator[None]:
    """LoggingSetup replaces the root logger's handlers (pytest's capture among them)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    forget_secrets()
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


JSON_FORMAT = {"()": "homeserver.logging.JsonFormatter"}
SYNAPSE_FORMAT = {"format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s"}


@pytest.mark.usefixtures("_restore_root")
@pytest.mark.parametrize("formatter", [JSON_FORMAT, SYNAPSE_FORMAT], ids=["json", "synapse"])
def test_every_secret_pattern_is_still_redacted_on_a_per_request_line(
    tmp_path: Path, formatter: dict[str, str]
) -> None:
    out, config = tmp_path / "out.log", tmp_path / "log.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "formatters": {"main": formatter},
                "handlers": {
                    "file": {
                        "class": "logging.FileHandler",
                        "filename": str(out),
                        "formatter": "main",
                    }
                },
                "root": {"level": "INFO", "handlers": ["file"]},
            }
        )
    )
    LoggingSetup(config).apply()
    lines = PerRequestLogger("homeserver.access")
    for _, text, _, _ in CASES:
        lines.info("%s", text)  # as an argument, as the access line's target is
        lines.log(logging.INFO, text)  # and as the format string itself
    for handler in all_handlers():
        handler.flush()
    written = out.read_text(encoding="utf-8")
    if formatter is JSON_FORMAT:
        messages = [json.loads(line)["message"] for line in written.splitlines()]
    else:
        messages = written.split(" - INFO - ")[1:]
    assert len(messages) == 2 * len(CASES)
    for index, (description, _, gone, kept) in enumerate(CASES):
        for message in messages[2 * index : 2 * index + 2]:
            for secret in gone:
                assert secret not in message, description
            for fragment in kept:
                assert fragment in message, description
