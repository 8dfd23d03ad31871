"""Per-key token buckets (``rc_*`` config sections).

Each key (a user ID, or an IP for unauthenticated endpoints) owns a bucket of ``burst_count``
tokens refilled at ``per_second``; an action takes one token. A refused action learns how long
until a token is back, for ``retry_after_ms`` and ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from homeserver.errors import Codes, MatrixError

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class RateLimit:
    per_second: float
    burst_count: float


class RateLimitExceeded(MatrixError):
    def __init__(self, retry_after_ms: int, message: str = "Too Many Requests") -> None:
        super().__init__(429, Codes.LIMIT_EXCEEDED, message, retry_after_ms=retry_after_ms)
        self.retry_after_ms = retry_after_ms


class TokenBucketLimiter:
    #: buckets idle this long are full again and can be forgotten.
    _SWEEP_EVERY = 1024

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Clock = time.monotonic,
        exempt: frozenset[str] = frozenset(),
        message: str = "Too Many Requests",
    ) -> None:
        self._limit = limit
        self._clock = clock
        self._exempt = exempt
        self._message = message
        self._buckets: dict[str, tuple[float, float]] = {}
        self._calls = 0

    def _tokens(self, key: str, now: float) -> float:
        tokens, updated = self._buckets.get(key, (self._limit.burst_count, now))
        return min(self._limit.burst_count, tokens + (now - updated) * self._limit.per_second)

    def check(self, key: str, *, cost: float = 1.0) -> None:
        """Take ``cost`` tokens from ``key``'s bucket, or raise :class:`RateLimitExceeded`."""
        if key in self._exempt:
            return
        now = self._clock()
        tokens = self._tokens(key, now)
        if tokens < cost:
            missing = cost - tokens
            wait = missing / self._limit.per_second if self._limit.per_second > 0 else 3600.0
            raise RateLimitExceeded(max(1, math.ceil(wait * 1000)), self._message)
        self._buckets[key] = (tokens - cost, now)
        self._calls += 1
        if self._calls % self._SWEEP_EVERY == 0:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        full = [k for k in self._buckets if self._tokens(k, now) >= self._limit.burst_count]
        for key in full:
            del self._buckets[key]
