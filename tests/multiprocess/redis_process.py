"""A ``redis-server`` of the test's own on a free loopback port (never the shared 6379 one: a
test stops and restarts it). No persistence: ``--save ''`` and ``--appendonly no``."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from tests.federation.processes import stop_process_group
from tests.real_clients.server_process import free_port

REDIS_SERVER = "/usr/bin/redis-server"


class RedisProcess:
    """One Redis on ``port`` (fixed for its life, so a restart is the same address);
    :meth:`start` / :meth:`stop` any number of times."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 20) -> None:
        assert not self.running, "redis is already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    REDIS_SERVER,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                    "--daemonize",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited: {self.log_path.read_text()[-2000:]}")
            if self.ping():
                return
            time.sleep(0.05)
        self.stop()
        raise AssertionError("redis-server did not answer PING in time")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process_group(process, grace=10)
