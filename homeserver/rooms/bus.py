"""Domain events of the room lifecycle (``room.created``, ``room.upgraded``,
``room.upgrade.failed``), published after commit to subscribers.

A subscriber that fails is logged and skipped: it never fails the operation that published.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

ROOM_CREATED = "room.created"
ROOM_UPGRADED = "room.upgraded"
ROOM_UPGRADE_FAILED = "room.upgrade.failed"


@dataclass(frozen=True, slots=True)
class DomainEvent:
    name: str
    payload: dict[str, Any] = field(default_factory=dict)


Subscriber = Callable[[DomainEvent], Awaitable[None] | None]


class DomainEventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    async def publish(self, name: str, **payload: Any) -> None:
        event = DomainEvent(name, payload)
        for subscriber in self._subscribers:
            try:
                result = subscriber(event)
                if result is not None:
                    await result
            except Exception:
                logger.exception("domain event subscriber %r failed on %s", subscriber, name)
