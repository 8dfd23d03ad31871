"""What every key service shares: the store, this server's name, the clock, and the notifier
that wakes the /sync of users whose keys or devices changed."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.clock import WallClock
from homeserver.storage import Store
from homeserver.streams.notifier import Notifier
from homeserver.types import domain_of


@dataclass(frozen=True, slots=True)
class KeysContext:
    store: Store
    server_name: str
    clock: WallClock
    notifier: Notifier

    def is_mine(self, user_id: str) -> bool:
        return domain_of(user_id) == self.server_name
