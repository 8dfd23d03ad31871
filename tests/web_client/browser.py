"""The Node side of the browser tests (tests/web_client, tests/admin_ui): a driver script
(puppeteer-core driving Debian's Chromium, built on ``harness.mjs``) as a child process, one
JSON line per step each way.

What the tests need is installed by ``scripts/web_client_deps.sh`` (``scripts/test`` runs it):
Chromium from Debian and ``puppeteer-core`` from npm (pinned in ``package.json`` and its
lockfile). A missing piece FAILS the test with the command to run — never a skip, so CI cannot
pass without the browser.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import IO, Any

import pytest

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "driver.mjs"
INSTALL_HINT = "run scripts/web_client_deps.sh (scripts/test does)"


def chromium_path() -> str:
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    pytest.fail(f"Chromium is not installed: {INSTALL_HINT}", pytrace=False)


def node_path() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail(f"node is not installed: {INSTALL_HINT}", pytrace=False)
    if not (HERE / "node_modules" / "puppeteer-core").is_dir():
        pytest.fail(f"puppeteer-core is not installed in {HERE}: {INSTALL_HINT}", pytrace=False)
    return found


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


class Driver:
    """One driver process (``driver.mjs`` unless ``script`` names another speaking the same
    protocol): ``run(step)`` sends a step and returns its JSON result."""

    def __init__(self, env: dict[str, str], log_path: Path, script: Path = DRIVER) -> None:
        self._log = log_path.open("w")
        self._process = subprocess.Popen(
            [node_path(), str(script)],
            cwd=HERE,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            # Its own process group, so Chromium goes with it if it has to be killed.
            start_new_session=True,
        )
        self._log_path = log_path
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self._process.stdout is not None
        threading.Thread(
            target=_pump, args=(self._process.stdout, self._lines), daemon=True
        ).start()
        hello = self._read(timeout=60)
        if not hello.get("ready"):
            raise AssertionError(f"the browser did not start: {hello}")
        self.chromium_version = str(hello.get("chromium"))

    def _read(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"driver.mjs gave no answer in {timeout} s") from None
        if line is None:
            raise AssertionError(f"driver.mjs exited: {self.stderr_tail()}")
        answer: dict[str, Any] = json.loads(line)
        if "fatal" in answer:
            raise AssertionError(f"driver.mjs failed: {answer['fatal']}")
        return answer

    def run(
        self, step: str, timeout: float = 120, args: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"step": step, "args": args or {}}) + "\n")
        self._process.stdin.flush()
        return self._read(timeout)

    def stderr_tail(self) -> str:
        self._log.flush()
        return self._log_path.read_text(errors="replace")[-3000:]

    def close(self) -> None:
        try:
            if self._process.poll() is None and self._process.stdin is not None:
                self._process.stdin.write(json.dumps({"step": "quit"}) + "\n")
                self._process.stdin.flush()
                self._process.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._log.close()
