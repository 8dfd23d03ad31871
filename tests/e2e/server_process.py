"""A real ``homeserver run`` child process on a free loopback port, for tests with real clients."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("HOMESERVER_SECRETS_KEY", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _wait_for_health(base_url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError("homeserver exited during start-up")
        try:
            with urllib.request.urlopen(base_url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("homeserver did not answer /health in time")


@contextmanager
def running_homeserver(
    tmp_path: Path, server_name: str, overrides: dict[str, Any] | None = None
) -> Iterator[str]:
    """Generate a config (plus ``overrides``), run the server, yield its base URL, stop it."""
    port = free_port()
    config_path = tmp_path / "homeserver.yaml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "homeserver",
            "generate-config",
            "--server-name",
            server_name,
            "--config-path",
            str(config_path),
            "--data-dir",
            str(tmp_path / "data"),
            "--http-port",
            str(port),
        ],
        env=_env(),
        check=True,
        capture_output=True,
        timeout=60,
    )
    config = yaml.safe_load(config_path.read_text())
    config.update(overrides or {})
    config_path.write_text(yaml.safe_dump(config))
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "homeserver", "run", "--config-path", str(config_path)],
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_for_health(base_url, process)
            yield base_url
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    server_log = log_path.read_text(errors="replace")
    assert "Traceback" not in server_log, server_log[-4000:]
