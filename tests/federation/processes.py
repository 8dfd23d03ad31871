"""Stopping a child server started in a session of its own, with everything it spawned."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def stop_process_group(process: subprocess.Popen[bytes] | None, grace: float = 20) -> None:
    """SIGTERM to the process group of ``process`` (started with ``start_new_session=True``);
    SIGKILL if the leader has not exited within ``grace`` seconds."""
    if process is None or process.poll() is not None:
        return
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait(timeout=10)
