"""The notifier's parking signal: a test awaits ``parked()`` to know a long poll is really
waiting (instead of sleeping and hoping), and the count drops when the waiter leaves."""

from __future__ import annotations

import asyncio

from homeserver.streams.notifier import Notifier


async def test_parked_returns_once_a_waiter_waits() -> None:
    notifier = Notifier()
    assert notifier.waiters == 0
    waiter = asyncio.create_task(notifier.wait(notifier.generation, 30))
    await asyncio.wait_for(notifier.parked(), 10)
    assert notifier.waiters == 1 and not waiter.done()
    notifier.notify()
    assert await asyncio.wait_for(waiter, 10) is True
    assert notifier.waiters == 0


async def test_parked_counts_several_waiters() -> None:
    notifier = Notifier()
    seen = notifier.generation
    first = asyncio.create_task(notifier.wait(seen, 30))
    await asyncio.wait_for(notifier.parked(), 10)
    counted = asyncio.create_task(notifier.parked(2))
    await asyncio.sleep(0)
    assert not counted.done()  # one waiter is not two
    second = asyncio.create_task(notifier.wait(seen, 30))
    await asyncio.wait_for(counted, 10)
    assert notifier.waiters == 2
    notifier.notify()
    assert await asyncio.gather(first, second) == [True, True]


async def test_a_waiter_that_need_not_wait_never_parks() -> None:
    notifier = Notifier()
    seen = notifier.generation
    notifier.notify()
    assert await notifier.wait(seen, 30) is True
    assert notifier.waiters == 0


async def test_a_timed_out_waiter_unparks() -> None:
    notifier = Notifier()
    assert await notifier.wait(notifier.generation, 0) is False
    assert notifier.waiters == 0
