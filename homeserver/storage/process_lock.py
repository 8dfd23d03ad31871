"""One process per SQLite database: an exclusive lock on ``<database>.lock`` beside it.

SQLite is the embedded, single-process engine: the notifier, caches, typing and rate limits of
a second process would not see the first's writes (several processes need PostgreSQL and
Redis). ``flock`` is released by the kernel when the holder exits, however it exits (SIGKILL
included), so a crashed server never leaves a stale lock behind; the file keeps the holder's
pid for the operator.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class DatabaseInUse(Exception):
    """Another process holds the database; the message is one line for the operator."""


class ProcessLock:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, database: Path) -> ProcessLock:
        """Take the lock beside ``database`` or raise :class:`DatabaseInUse`."""
        path = database.with_name(database.name + ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise DatabaseInUse(
                f"the SQLite database {database} is in use by another homeserver process"
                f" (pid {holder}); SQLite serves one process only, use PostgreSQL and Redis"
                " for several"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
