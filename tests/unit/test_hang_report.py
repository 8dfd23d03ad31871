"""The per-test timeout's report names the await a hung asyncio test is stuck in."""

from __future__ import annotations

import asyncio
import signal
from types import SimpleNamespace

import pytest

from tests import hang_report


def test_a_hung_loop_is_stopped_with_its_pending_tasks_named() -> None:
    async def stuck_forever() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        asyncio.get_running_loop().create_task(stuck_forever(), name="stuck-waiter")
        await asyncio.sleep(60)

    item = SimpleNamespace()
    loop = asyncio.new_event_loop()
    try:
        hang_report.install(item, 0.2)  # type: ignore[arg-type]
        with pytest.raises(pytest.fail.Exception) as failure:
            loop.run_until_complete(main())
    finally:
        item.cancel_timeout()
        loop.close()
    message = str(failure.value)
    assert message.startswith("Timeout >0.2s")
    assert "task stuck-waiter" in message
    assert "await asyncio.Event().wait()" in message
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL
