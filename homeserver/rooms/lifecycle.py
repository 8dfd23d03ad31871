"""The room lifecycle state machine (DESIGN.md §3.2), as a pure transition table.

Storage applies a transition with a compare-and-set on the room row, so the check here and the
write there agree: a transition not in the table is refused before any SQL runs.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)


class RoomStatus(enum.StrEnum):
    ACTIVE = "active"
    UPGRADING = "upgrading"
    TOMBSTONED = "tombstoned"


class Actor(enum.StrEnum):
    REQUESTER = "requester"
    SYSTEM = "system"
    #: another server: a tombstone received over federation.
    FEDERATION = "federation"


@dataclass(frozen=True, slots=True)
class Transition:
    source: RoomStatus
    target: RoomStatus
    actor: Actor
    when: str


TRANSITIONS: tuple[Transition, ...] = (
    Transition(RoomStatus.ACTIVE, RoomStatus.UPGRADING, Actor.REQUESTER, "an upgrade starts"),
    Transition(
        RoomStatus.UPGRADING,
        RoomStatus.ACTIVE,
        Actor.SYSTEM,
        "the upgrade failed, was abandoned, or its lease expired",
    ),
    Transition(RoomStatus.UPGRADING, RoomStatus.TOMBSTONED, Actor.SYSTEM, "the upgrade committed"),
    Transition(
        RoomStatus.ACTIVE,
        RoomStatus.TOMBSTONED,
        Actor.SYSTEM,
        "a tombstone arrived another way (a client's state PUT)",
    ),
    # A remote server's upgrade: our copy of the room never passes through ``upgrading``.
    Transition(
        RoomStatus.ACTIVE,
        RoomStatus.TOMBSTONED,
        Actor.FEDERATION,
        "a tombstone arrived over federation",
    ),
)

INITIAL_STATUS = RoomStatus.ACTIVE
TERMINAL_STATUSES = frozenset({RoomStatus.TOMBSTONED})

_ALLOWED = {(t.source, t.target, t.actor): t for t in TRANSITIONS}


class InvalidTransition(Exception):
    def __init__(self, source: RoomStatus, target: RoomStatus) -> None:
        super().__init__(f"room lifecycle: {source} -> {target} is not allowed")
        self.source = source
        self.target = target


def transition(source: RoomStatus, target: RoomStatus, actor: Actor) -> Transition:
    """The transition ``source -> target`` by ``actor``, or :class:`InvalidTransition`."""
    found = _ALLOWED.get((source, target, actor))
    if found is None:
        logger.warning("refused room lifecycle transition %s -> %s by %s", source, target, actor)
        raise InvalidTransition(source, target)
    return found


def can_transition(source: RoomStatus, target: RoomStatus, actor: Actor) -> bool:
    try:
        transition(source, target, actor)
    except InvalidTransition:
        return False
    return True
