"""Domain events of the room lifecycle (``room.created``, ``room.upgraded``,
``room.upgrade.failed``, ``room.create.rate_limited``), published after commit (or after the
refusal) to subscribers.

A subscriber that fails is logged and skipped: it never fails the operation that published.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

ROOM_CREATED = "room.created"
ROOM_UPGRADED = "room.upgraded"
ROOM_UPGRADE_FAILED = "room.upgrade.failed"
#: createRoom refused by ``rc_room_creation`` (other refusals are the client's mistakes, not
#: lifecycle events; a rate-limited upgrade is ``room.upgrade.failed`` with that reason).
ROOM_CREATE_RATE_LIMITED = "room.create.rate_limited"


@dataclass(frozen=True, slots=True)
class DomainEvent:
    name: str
    payload: dict[str, Any] = field(default_factory=dict)


Subscriber = Callable[[DomainEvent], Awaitable[None] | None]


#: How long ``publish`` waits for an async subscriber before leaving it to finish in the
#: background: a slow or stuck operator module must not hold up the operation that published.
SUBSCRIBER_WAIT_SECONDS = 1.0


class DomainEventBus:
    def __init__(self, wait_seconds: float = SUBSCRIBER_WAIT_SECONDS) -> None:
        self._subscribers: list[Subscriber] = []
        self.wait_seconds = wait_seconds
        #: subscribers still running after ``wait_seconds`` (kept referenced until they end).
        self._late: set[asyncio.Future[None]] = set()

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    async def publish(self, name: str, **payload: Any) -> None:
        event = DomainEvent(name, payload)
        for subscriber in self._subscribers:
            try:
                result = subscriber(event)
                if result is not None:
                    await self._wait_bounded(subscriber, name, result)
            except Exception:
                logger.exception("domain event subscriber %r failed on %s", subscriber, name)

    async def _wait_bounded(
        self, subscriber: Subscriber, name: str, result: Awaitable[None]
    ) -> None:
        future = asyncio.ensure_future(result)
        done, _ = await asyncio.wait({future}, timeout=self.wait_seconds)
        if future in done:
            future.result()  # the subscriber's error, if any, is logged by publish
            return
        logger.warning(
            "domain event subscriber %r is slow on %s; not waiting for it", subscriber, name
        )
        self._late.add(future)

        def finished(late: asyncio.Future[None]) -> None:
            self._late.discard(late)
            if not late.cancelled() and late.exception() is not None:
                logger.error(
                    "domain event subscriber %r failed on %s",
                    subscriber,
                    name,
                    exc_info=late.exception(),
                )

        future.add_done_callback(finished)
