"""A dictionary bounded in size (least recently used entries go first) and in time (entries
expire), for in-memory caches keyed by remote input: a peer can invent server names, key IDs and
user IDs without end, so no such cache may grow with them or keep them forever.

Expired entries are dropped when met; making room evicts the least recently used entry (O(1)),
so a cache never holds more than ``max_size`` entries whatever the clock does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

from homeserver.clock import WallClock

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

class BoundedTtlCache(Generic[K, V]):
    def __init__(self, max_size: int, ttl_ms: int, clock: WallClock) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        if ttl_ms < 1:
            raise ValueError("ttl_ms must be at least 1")
        self.max_size = max_size
        self.ttl_ms = ttl_ms
        self._clock = clock
        #: key → (expires at, value), least recently used first.
        self._entries: OrderedDict[K, tuple[int, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value under ``key`` (now the most recently used), or None if absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_ms, value = entry
        if expires_ms <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def set(self, key: K, value: V, ttl_ms: int | None = None) -> None:
        """Store ``value`` for ``ttl_ms`` (the cache's lifetime if None, never longer)."""
        lifetime = self.ttl_ms if ttl_ms is None else max(0, min(ttl_ms, self.ttl_ms))
        now = self._clock()
        self._entries[key] = (now + lifetime, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> V | None:
        entry = self._entries.pop(key, None)
        return None if entry is None else entry[1]

    def clear(self) -> None:
        self._entries.clear()

    def __contains__(self, key: object) -> bool:
        entry = self._entries.get(key)  # type: ignore[call-overload]
        return entry is not None and entry[0] > self._clock()

    def __len__(self) -> int:
        """Entries held, expired ones not yet dropped included (what the memory holds)."""
        return len(self._entries)

    def keys(self) -> Iterator[K]:
        now = self._clock()
        return iter([k for k, (expires_ms, _) in self._entries.items() if expires_ms > now])
