"""Applying log_config in-process: filters on every handler, a failed reload keeps the old one."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from homeserver.logging.context import LogContextFilter
from homeserver.logging.redaction import RedactionFilter
from homeserver.logging.setup import LogConfigError, LoggingSetup, all_handlers


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """dictConfig replaces the root logger's handlers (pytest's capture among them)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("tests.setup.quiet", "tests.setup.own"):
        named = logging.getLogger(name)
        for handler in named.handlers[:]:
            named.removeHandler(handler)
            handler.close()
        named.setLevel(logging.NOTSET)
        named.propagate = True


def _file_config(path: Path, log_file: Path, *, level: str = "INFO", fmt: str = "plain") -> None:
    formatters = {
        "plain": {"format": "%(levelname)s %(request)s %(name)s %(message)s"},
        "json": {"()": "homeserver.logging.JsonFormatter"},
    }
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "formatters": {"main": formatters[fmt]},
                "handlers": {
                    "file": {
                        "class": "logging.FileHandler",
                        "filename": str(log_file),
                        "formatter": "main",
                    }
                },
                "loggers": {
                    "tests.setup.own": {
                        "level": "DEBUG",
                        "handlers": ["file"],
                        "propagate": False,
                    }
                },
                "root": {"level": level, "handlers": ["file"]},
            }
        )
    )


def _flush() -> None:
    for handler in all_handlers():
        handler.flush()


def test_every_handler_gets_the_filters(tmp_path: Path) -> None:
    config = tmp_path / "log.yaml"
    _file_config(config, tmp_path / "out.log")
    LoggingSetup(config).apply()
    handlers = all_handlers()
    assert handlers
    for handler in handlers:
        kinds = {type(f) for f in handler.filters}
        assert {LogContextFilter, RedactionFilter} <= kinds, handler


def test_a_user_config_cannot_log_a_password(tmp_path: Path) -> None:
    config, out = tmp_path / "log.yaml", tmp_path / "out.log"
    _file_config(config, out)
    LoggingSetup(config).apply()
    logging.getLogger("tests.setup.own").debug("body %s", {"password": "hunter2-secret"})
    logging.getLogger("tests.setup.other").info("token %s", "syt_abcdefghijklmnopqrstuvwxyz")
    _flush()
    text = out.read_text()
    assert "hunter2-secret" not in text and "abcdefghijklmnop" not in text
    assert "INFO None tests.setup.other token" in text  # %(request)s is always there


def test_loggers_created_before_the_config_are_not_silenced(tmp_path: Path) -> None:
    early = logging.getLogger("tests.setup.quiet")  # exists before dictConfig runs
    config, out = tmp_path / "log.yaml", tmp_path / "out.log"
    _file_config(config, out)  # no disable_existing_loggers: dictConfig's default is True
    LoggingSetup(config).apply()
    early.warning("still here")
    _flush()
    assert "still here" in out.read_text()


def test_default_is_json_lines_at_info(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    LoggingSetup(None).apply()
    logging.getLogger("tests.setup.quiet").debug("not shown")
    logging.getLogger("tests.setup.quiet").info("shown %s", "here")
    _flush()
    lines = [
        json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")
    ]
    assert [line["message"] for line in lines] == ["shown here"]
    assert lines[0]["level"] == "INFO"


@pytest.mark.parametrize(
    "bad",
    [
        "version: 1\nhandlers: {h: {class: no.such.Handler}}\nroot: {handlers: [h]}\n",
        "version: [unclosed\n",
        "just a string\n",
        "version: 1\nformatters: {f: {(): no.such.formatter}}\n",
    ],
    ids=["unknown handler class", "bad YAML", "not a mapping", "unknown formatter factory"],
)
def test_a_bad_file_on_reload_keeps_the_previous_config(tmp_path: Path, bad: str) -> None:
    config, out = tmp_path / "log.yaml", tmp_path / "out.log"
    _file_config(config, out)
    setup = LoggingSetup(config)
    setup.apply()
    config.write_text(bad)
    assert setup.reload() is False
    logging.getLogger("tests.setup.quiet").warning("after the failed reload")
    _flush()
    text = out.read_text()
    assert "not reloaded, keeping the previous one" in text
    assert "after the failed reload" in text


def test_a_bad_file_at_start_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "log.yaml"
    config.write_text(
        "version: 1\nhandlers: {h: {class: no.such.Handler}}\nroot: {handlers: [h]}\n"
    )
    with pytest.raises(LogConfigError):
        LoggingSetup(config).apply()


def test_reload_applies_a_new_level_and_format(tmp_path: Path) -> None:
    config, out = tmp_path / "log.yaml", tmp_path / "out.log"
    _file_config(config, out, level="WARNING")
    setup = LoggingSetup(config)
    setup.apply()
    logging.getLogger("tests.setup.quiet").info("info before")
    _file_config(config, out, level="INFO", fmt="json")
    assert setup.reload() is True
    logging.getLogger("tests.setup.quiet").info("info after")
    _flush()
    text = out.read_text()
    assert "info before" not in text
    after = [json.loads(line) for line in text.splitlines() if "info after" in line]
    assert after and after[0]["message"] == "info after"
