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


def server_env() -> dict[str, str]:
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


def generate_config(
    workdir: Path, server_name: str, port: int, overrides: dict[str, Any] | None = None
) -> Path:
    """``homeserver generate-config`` into ``workdir`` (data in ``workdir/data``), then
    ``overrides`` applied to the top-level keys of the YAML."""
    config_path = workdir / "homeserver.yaml"
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
            str(workdir / "data"),
            "--http-port",
            str(port),
        ],
        env=server_env(),
        check=True,
        capture_output=True,
        timeout=60,
    )
    config = yaml.safe_load(config_path.read_text())
    config.update(overrides or {})
    config_path.write_text(yaml.safe_dump(config))
    return config_path


def config_with_port(config_path: Path, port: int, new_path: Path) -> Path:
    """A copy of the config at ``config_path`` whose listeners use ``port`` (same data, same
    signing key: a second process of the same server)."""
    config = yaml.safe_load(config_path.read_text())
    for listener in config.get("listeners", []):
        listener["port"] = port
    new_path.write_text(yaml.safe_dump(config))
    return new_path


def start_process(
    config_path: Path, log_path: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``homeserver run`` (output appended to ``log_path``); not waited for."""
    env = server_env()
    env.update(extra_env or {})
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "homeserver", "run", "--config-path", str(config_path)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not stop within 30 s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for_health(base_url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    _wait_for_health(base_url, process, timeout)


@contextmanager
def running_homeserver(
    tmp_path: Path,
    server_name: str,
    overrides: dict[str, Any] | None = None,
    port: int | None = None,
) -> Iterator[str]:
    """Generate a config (plus ``overrides``), run the server (on ``port``, or a free one),
    yield its base URL, stop it."""
    port = port or free_port()
    config_path = generate_config(tmp_path, server_name, port, overrides)
    log_path = tmp_path / "server.log"
    process = start_process(config_path, log_path)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_health(base_url, process)
        yield base_url
    finally:
        stop_process(process)
    server_log = log_path.read_text(errors="replace")
    assert "Traceback" not in server_log, server_log[-4000:]
