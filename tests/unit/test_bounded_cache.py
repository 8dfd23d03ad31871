"""The bounded TTL-LRU cache used for every in-memory cache keyed by remote input."""

from __future__ import annotations

import pytest

from homeserver.bounded_cache import BoundedTtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        return self.now


def test_size_bound_evicts_least_recently_used() -> None:
    cache: BoundedTtlCache[str, int] = BoundedTtlCache(3, 10_000, Clock())
    for i, name in enumerate(["a", "b", "c"]):
        cache.set(name, i)
    assert cache.get("a") == 0  # "a" is now the most recently used
    cache.set("d", 3)
    assert len(cache) == 3
    assert "b" not in cache
    assert [cache.get(k) for k in ("a", "c", "d")] == [0, 2, 3]


def test_n_plus_one_distinct_keys_keep_n() -> None:
    cache: BoundedTtlCache[str, int] = BoundedTtlCache(100, 10_000, Clock())
    for i in range(101):
        cache.set(f"s{i}.example", i)
    assert len(cache) == 100
    assert cache.get("s0.example") is None
    assert cache.get("s100.example") == 100


def test_entries_expire() -> None:
    clock = Clock()
    cache: BoundedTtlCache[str, str] = BoundedTtlCache(10, 500, clock)
    cache.set("a", "x")
    clock.now += 499
    assert cache.get("a") == "x"
    clock.now += 1
    assert cache.get("a") is None
    assert len(cache) == 0


@pytest.mark.parametrize(
    ("ttl_ms", "alive_at", "dead_at"),
    [
        (None, 999, 1_000),  # the cache's lifetime
        (100, 99, 100),  # shorter per entry
        (5_000, 999, 1_000),  # never longer than the cache's lifetime
        (0, None, 0),  # already expired
    ],
)
def test_per_entry_lifetime(ttl_ms: int | None, alive_at: int | None, dead_at: int) -> None:
    clock = Clock()
    start = clock.now
    cache: BoundedTtlCache[str, int] = BoundedTtlCache(10, 1_000, clock)
    cache.set("k", 1, ttl_ms)
    if alive_at is not None:
        clock.now = start + alive_at
        assert "k" in cache and cache.get("k") == 1
    clock.now = start + dead_at
    assert "k" not in cache and cache.get("k") is None


def test_overwrite_refreshes_and_pop() -> None:
    clock = Clock()
    cache: BoundedTtlCache[str, int] = BoundedTtlCache(2, 100, clock)
    cache.set("a", 1)
    clock.now += 90
    cache.set("a", 2)
    clock.now += 90
    assert cache.get("a") == 2
    assert cache.pop("a") == 2
    assert cache.pop("a") is None
    assert list(cache.keys()) == []


@pytest.mark.parametrize(("size", "ttl"), [(0, 1), (1, 0)])
def test_bad_bounds(size: int, ttl: int) -> None:
    with pytest.raises(ValueError):
        BoundedTtlCache(size, ttl, Clock())
