"""Backoff per destination, as Synapse's ``synapse/util/retryutils.py`` behaves (pure).

After the first failure a destination waits ``destination_min_retry_interval``; each further
failure multiplies the wait by ``destination_retry_multiplier`` times a random factor in
[0.8, 1.4) (so that many servers that went down together do not all retry together), capped at
``destination_max_retry_interval``. A success — or any sign that the destination is back, such as
a request from it — clears the backoff.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from homeserver.config.federation import FederationConfig
from homeserver.storage.outbox import RetryState

#: Synapse's jitter range.
JITTER_LOW = 0.8
JITTER_HIGH = 1.4

Jitter = Callable[[], float]


def synapse_jitter() -> float:
    return random.uniform(JITTER_LOW, JITTER_HIGH)


def next_retry_interval(
    current_ms: int, config: FederationConfig, jitter: Jitter = synapse_jitter
) -> int:
    """The wait after one more failure, given the wait after the previous one (0: none)."""
    if current_ms <= 0:
        return config.destination_min_retry_interval_ms
    grown = int(current_ms * config.destination_retry_multiplier * jitter())
    return min(
        max(grown, config.destination_min_retry_interval_ms),
        config.destination_max_retry_interval_ms,
    )


def after_failure(
    state: RetryState | None,
    destination: str,
    now: int,
    config: FederationConfig,
    jitter: Jitter = synapse_jitter,
) -> RetryState:
    """The destination's state after a failed attempt at ``now``."""
    if state is None:
        state = RetryState(destination, None, 0, 0)
    return replace(
        state,
        failure_ts=state.failure_ts if state.failure_ts is not None else now,
        retry_last_ts=now,
        retry_interval_ms=next_retry_interval(state.retry_interval_ms, config, jitter),
    )


def healthy(destination: str) -> RetryState:
    """The state of a destination that answered."""
    return RetryState(destination, None, 0, 0)


def is_backing_off(state: RetryState | None) -> bool:
    return state is not None and state.retry_interval_ms > 0


def is_due(state: RetryState | None, now: int) -> bool:
    return state is None or state.retry_interval_ms <= 0 or state.next_attempt_ts <= now
