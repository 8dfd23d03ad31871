"""The real ``homeserver`` command in a child process: generate a config, serve, stop on
SIGTERM; and a bad config stopping start-up with one line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("HOMESERVER_SECRETS_KEY", None)
    # The package may not be pip-installed in the venv; import it from the checkout.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _homeserver(*args: str) -> list[str]:
    return [sys.executable, "-m", "homeserver", *args]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _wait_for_health(url: str, process: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early: {process.communicate()}")
        try:
            if _get(url) == (200, b"OK"):
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not answer /health in time")


def test_generate_run_and_stop(tmp_path: Path) -> None:
    port = _free_port()
    config_path = tmp_path / "homeserver.yaml"
    generated = subprocess.run(
        _homeserver(
            "generate-config",
            "--server-name",
            "localhost:8008",
            "--config-path",
            str(config_path),
            "--data-dir",
            str(tmp_path / "data"),
            "--http-port",
            str(port),
        ),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert generated.returncode == 0, generated.stderr

    process = subprocess.Popen(
        _homeserver("run", "--config-path", str(config_path)),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_health(f"http://127.0.0.1:{port}/health", process)
        status, body = _get(f"http://127.0.0.1:{port}/_matrix/key/v2/server")
        assert status == 200
        assert json.loads(body)["server_name"] == "localhost:8008"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "listening on http://127.0.0.1:" in stderr and "stopped" in stderr


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config_path = tmp_path / "homeserver.yaml"
    config = {
        "server_name": "localhost",
        "listeners": [{"port": "eighty", "resources": [{"names": ["client"]}]}],
    }
    config_path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        _homeserver("run", "--config-path", str(config_path)),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("config error: listeners[0].port: ")
