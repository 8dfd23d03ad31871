"""``wait_event`` (streams/waiting.py): a timeout, a wake-up, and a cancellation that arrives
with the wake-up, which must end the waiting loop (asyncio.wait_for on 3.11 loses it: the loop
is left "cancelling" for ever, as a server's push evaluator was at shutdown in CI)."""

from __future__ import annotations

import asyncio

from homeserver.streams.waiting import wait_event


async def test_set_before_and_during_and_timeout() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0.01) is True
    event.clear()
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, None) is True


async def test_a_cancel_that_meets_the_wake_up_ends_the_loop() -> None:
    for timeout in (5.0, None):
        event = asyncio.Event()
        rounds = 0

        async def background() -> None:
            nonlocal rounds
            while True:
                await wait_event(event, timeout)  # noqa: B023 - this round's event
                event.clear()  # noqa: B023
                rounds += 1

        task = asyncio.create_task(background())
        await asyncio.sleep(0)  # parked in the wait
        event.set()
        task.cancel()  # in the same step as the wake-up
        done, _ = await asyncio.wait([task], timeout=2)
        assert task in done, f"cancellation lost (timeout={timeout})"
        assert task.cancelled()
        assert rounds == 0
