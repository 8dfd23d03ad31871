"""The background jobs an admin request starts in this process (room deletions, history purges,
redactions of a user's events), by their ID: started, awaited, cancelled at shutdown.

Their progress lives in the database; this registry only knows which of them run here now.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._tasks

    def items(self) -> Iterator[tuple[str, asyncio.Task[None]]]:
        return iter(list(self._tasks.items()))

    def spawn(self, key: str, job: Coroutine[Any, Any, None], *, name: str) -> None:
        """Run ``job`` in the background under ``key`` until it ends."""
        task = asyncio.get_running_loop().create_task(job, name=name)
        self._tasks[key] = task
        task.add_done_callback(lambda _t: self._forget(key, task))

    def _forget(self, key: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]

    async def wait(self, key: str) -> None:
        """Until ``key``'s job (if it runs here) has ended."""
        task = self._tasks.get(key)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Until every job running here has ended (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def stop(self) -> None:
        """Cancel every job running here (each stays unfinished in the database)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
