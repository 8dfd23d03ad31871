"""Waiting for an ``asyncio.Event`` with a time limit, without losing a cancellation.

On Python 3.11, ``asyncio.wait_for`` returns normally when the task is cancelled at the moment
the awaited event is set: the cancellation is swallowed. A background loop (the push evaluator,
the upgrade follower, a destination's backoff) stopped at that moment never ends, and whoever
awaits it — shutdown — waits for ever. CI's per-test timeout caught exactly that: a server
that logged "shutting down" and never exited. ``asyncio.timeout`` has no such window.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """True once ``event`` is set, False after ``timeout`` seconds (None: no limit)."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
