from __future__ import annotations

import pytest

from homeserver.ratelimit import RateLimit, RateLimitExceeded, TokenBucketLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_burst_then_refused_with_retry_after():
    clock = FakeClock()
    limiter = TokenBucketLimiter(RateLimit(per_second=0.5, burst_count=3), clock=clock)
    for _ in range(3):
        await limiter.check("@a:x")
    with pytest.raises(RateLimitExceeded) as info:
        await limiter.check("@a:x")
    assert info.value.status == 429
    assert info.value.to_json()["errcode"] == "M_LIMIT_EXCEEDED"
    assert info.value.retry_after_ms == 2000


async def test_refills_over_time_and_keys_are_independent():
    clock = FakeClock()
    limiter = TokenBucketLimiter(RateLimit(per_second=1, burst_count=1), clock=clock)
    await limiter.check("@a:x")
    await limiter.check("@b:x")
    with pytest.raises(RateLimitExceeded):
        await limiter.check("@a:x")
    clock.now += 1.0
    await limiter.check("@a:x")


async def test_exempt_users_are_never_limited():
    limiter = TokenBucketLimiter(
        RateLimit(per_second=0.001, burst_count=1), clock=FakeClock(), exempt=frozenset({"@a:x"})
    )
    for _ in range(10):
        await limiter.check("@a:x")


async def test_message_is_carried():
    limiter = TokenBucketLimiter(
        RateLimit(per_second=0.016, burst_count=1), clock=FakeClock(), message="slow down"
    )
    await limiter.check("k")
    with pytest.raises(RateLimitExceeded, match="slow down") as info:
        await limiter.check("k")
    assert info.value.retry_after_ms == 62500


async def test_exempt_users_come_from_config(tmp_path):
    from homeserver.config import ConfigError, HomeserverConfig
    from homeserver.ratelimit import RateLimiters

    config = HomeserverConfig.parse(
        {
            "server_name": "example.org",
            "rc_room_creation": {"per_second": 0.001, "burst_count": 1},
            "rc_exempt_users": ["@bot:example.org"],
        },
        tmp_path,
    )
    limiters = RateLimiters(config.ratelimiting, clock=FakeClock())
    for _ in range(5):
        await limiters.room_creation.check("@bot:example.org")
    await limiters.room_creation.check("@alice:example.org")
    with pytest.raises(RateLimitExceeded):
        await limiters.room_creation.check("@alice:example.org")
    with pytest.raises(ConfigError, match=r"rc_exempt_users\[0\]"):
        HomeserverConfig.parse({"server_name": "example.org", "rc_exempt_users": ["bot"]}, tmp_path)


class FakeShared:
    """Shared buckets answering from ``answers`` (None: unreachable), recording the calls."""

    def __init__(self, *answers: float | None) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, float, bool]] = []

    async def take(self, bucket: str, limit: RateLimit, cost: float, *, charge: bool):
        self.calls.append((bucket, cost, charge))
        return self.answers.pop(0)


async def test_shared_buckets_decide_and_unreachable_ones_fall_back_to_our_own():
    shared = FakeShared(0.0, 0.5, None, None, 0.0)
    limiter = TokenBucketLimiter(
        RateLimit(per_second=1, burst_count=1), clock=FakeClock(), name="message", shared=shared
    )
    await limiter.check("@a:x")  # shared: allowed (our own bucket is not charged)
    with pytest.raises(RateLimitExceeded) as info:
        await limiter.check("@a:x")  # shared: half a token missing
    assert info.value.retry_after_ms == 500
    await limiter.check("@a:x")  # unreachable: our own bucket, full
    with pytest.raises(RateLimitExceeded):
        await limiter.check("@a:x")  # unreachable: our own bucket, now empty
    await limiter.peek("@a:x")  # back: shared again
    assert shared.calls == [
        ("message:@a:x", 1.0, True),
        ("message:@a:x", 1.0, True),
        ("message:@a:x", 1.0, True),
        ("message:@a:x", 1.0, True),
        ("message:@a:x", 1.0, False),
    ]
