"""A PostgreSQL server of the test's own (initdb into a temporary directory, a spare port), so a
test can stop and start it under load without touching the shared test database.

Run as root, initdb refuses to work: the cluster then belongs to the ``postgres`` user and the
commands run through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.real_clients.server_process import free_port


def _bin_dir() -> Path | None:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    found = [Path(p) for p in candidates if (Path(p) / "pg_ctl").exists()]
    if found:
        return found[-1]
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


class PostgresInstance:
    def __init__(self, bin_dir: Path, root: Path, port: int, owner: str | None) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.port = port
        self.owner = owner

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin_dir / tool), *args]
        if self.owner is not None:
            command = ["runuser", "-u", self.owner, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stdout}\n{result.stderr}")

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--locale=C",
        )  # fmt: skip

    def start(self) -> None:
        """Start and wait until it accepts connections (``pg_ctl -w``)."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c max_connections=50"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "pg.log"), "-o", options,
                  "-w", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """``fast``: roll back open transactions, cut every connection, shut down cleanly."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


def available() -> bool:
    return _bin_dir() is not None


@contextmanager
def postgres_instance() -> Iterator[PostgresInstance]:
    """A fresh, started cluster; stopped and deleted afterwards."""
    bin_dir = _bin_dir()
    assert bin_dir is not None, "no PostgreSQL binaries (initdb, pg_ctl) on this machine"
    owner = "postgres" if os.geteuid() == 0 else None
    # Not under pytest's tmp_path: that is private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="hs-test-pg-"))
    if owner is not None:
        entry = pwd.getpwnam(owner)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    instance = PostgresInstance(bin_dir, root, free_port(), owner)
    try:
        instance.init()
        instance.start()
        yield instance
    finally:
        if instance.running():
            with suppress(RuntimeError):
                instance.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
