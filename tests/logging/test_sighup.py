"""SIGHUP re-reads log_config in a real ``homeserver run`` process, without a restart."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.real_clients.server_process import (
    free_port,
    generate_config,
    start_process,
    stop_process,
    wait_for_health,
)

WAIT_SECONDS = 60  # a deadline for polling, not a timing assertion


def _log_config(path: Path, *, level: str, json_lines: bool) -> None:
    formatter = (
        {"()": "homeserver.logging.JsonFormatter"}
        if json_lines
        else {"format": "PLAIN %(levelname)s %(request)s %(name)s: %(message)s"}
    )
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "formatters": {"main": formatter},
                "handlers": {
                    "stderr": {
                        "class": "logging.StreamHandler",
                        "formatter": "main",
                        "stream": "ext://sys.stderr",
                    }
                },
                "root": {"level": level, "handlers": ["stderr"]},
            }
        )
    )


def _wait_for(log_path: Path, found: Callable[[str], bool], what: str) -> str:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if found(text):
            return text
        time.sleep(0.1)
    raise AssertionError(f"never saw {what} in the server's output:\n{text[-3000:]}")


def _get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200


def test_sighup_reloads_log_level_and_format(tmp_path: Path) -> None:
    port = free_port()
    log_config = tmp_path / "log_config.yaml"
    _log_config(log_config, level="WARNING", json_lines=False)
    config_path = generate_config(tmp_path, "sighup.test", port, {"log_config": str(log_config)})
    log_path = tmp_path / "server.log"
    process = start_process(config_path, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base, process)
        _get(base + "/_matrix/client/versions")
        # WARNING, plain: the access log's INFO line is not written.
        before = log_path.read_text(errors="replace")
        assert "/_matrix/client/versions" not in before

        _log_config(log_config, level="INFO", json_lines=True)
        os.kill(process.pid, signal.SIGHUP)
        _wait_for(log_path, lambda t: "reloaded" in t, "the reload line")
        _get(base + "/_matrix/client/versions")
        text = _wait_for(log_path, lambda t: "/_matrix/client/versions" in t, "the access line")
        access = [
            json.loads(line)
            for line in text.splitlines()
            if line.startswith("{") and "/_matrix/client/versions" in line
        ]
        assert access, text[-3000:]
        assert access[0]["level"] == "INFO"
        assert access[0]["logger"] == "homeserver.access"
        assert access[0]["request"].startswith("GET-")

        # A broken file: an error, and the JSON config stays in force.
        log_config.write_text("version: 1\nhandlers: {h: {class: no.such.Handler}}\n")
        os.kill(process.pid, signal.SIGHUP)
        text = _wait_for(log_path, lambda t: "not reloaded" in t, "the reload error")
        error = [json.loads(line) for line in text.splitlines() if "not reloaded" in line]
        assert error and error[0]["level"] == "ERROR"
        _get(base + "/health?after=broken")  # /health logs at DEBUG: use another path
        _get(base + "/_matrix/client/versions?after=broken")
        text = _wait_for(log_path, lambda t: "after=broken" in t, "a line after the bad reload")
        assert any(
            line.startswith("{") and "versions?after=broken" in line for line in text.splitlines()
        )
        assert process.poll() is None  # still serving, never restarted
    finally:
        stop_process(process)
    assert "Traceback" not in log_path.read_text(errors="replace")
