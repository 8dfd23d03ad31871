"""What a test was doing when pytest-timeout stopped it.

pytest-timeout's own signal handler writes thread stacks to the terminal, which an xdist worker
has not got, and an asyncio test hangs in an ``await`` that no thread stack shows (the main
thread only sits in the loop's ``select``). This handler puts both into the failure message,
which reaches the report: every thread's stack and every pending task of the running loop with
the coroutine frames it is suspended in.
"""

from __future__ import annotations

import asyncio
import io
import signal
import sys
import threading
import traceback
from types import FrameType
from typing import Any

import pytest

#: Keeps one report readable when a test leaves hundreds of tasks behind.
MAX_TASKS = 40


def hang_report() -> str:
    out = io.StringIO()
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    current = threading.get_ident()
    for ident, frame in sys._current_frames().items():
        if ident == current:
            continue  # the failure's own traceback shows it
        out.write(f"--- thread {names.get(ident, '?')} ({ident})\n")
        out.write("".join(traceback.format_stack(frame)))
    loop = asyncio._get_running_loop()
    if loop is not None:
        tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
        out.write(f"--- {len(tasks)} pending asyncio tasks\n")
        for task in tasks[:MAX_TASKS]:
            out.write(f"task {task.get_name()}: {task.get_coro()!r}\n")
            task.print_stack(limit=12, file=out)
    return out.getvalue()


def install(item: pytest.Item, timeout: float) -> None:
    """Arm SIGALRM for ``item`` (the main thread only: signals are delivered there)."""

    def on_timeout(signum: int, frame: FrameType | None) -> None:
        __tracebackhide__ = True
        pytest.fail(f"Timeout >{timeout}s (pytest-timeout); where it hung:\n{hang_report()}")

    def cancel() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # pytest-timeout's cancel hook
    signal.signal(signal.SIGALRM, on_timeout)
    signal.setitimer(signal.ITIMER_REAL, timeout)


def set_timer(item: pytest.Item, settings: Any) -> bool | None:
    if settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None  # pytest-timeout's own implementation
    install(item, settings.timeout)
    return True
