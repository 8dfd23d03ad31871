"""Per-key token buckets (``rc_*`` config sections).

Each key (a user ID, or an IP for unauthenticated endpoints) owns a bucket of ``burst_count``
tokens refilled at ``per_second``; an action takes one token. A refused action learns how long
until a token is back, for ``retry_after_ms`` and ``Retry-After``.

With Redis (several processes) the buckets live there (:class:`SharedBuckets`, implemented in
``streams/redis_ratelimit.py``), so a user's budget is the same whichever process he reaches;
while Redis cannot be reached each process falls back to its own buckets, and back again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

from homeserver.config.ratelimiting import RateLimit, RateLimitingConfig
from homeserver.errors import Codes, MatrixError

Clock = Callable[[], float]
#: A user's rate-limit override (Synapse's ``ratelimit_override``): ``(messages_per_second,
#: burst_count)``, or None when the user has none.
OverrideLookup = Callable[[str], tuple[float, float] | None]

#: How a limiter applies a user's override, as Synapse: ``rc_message`` takes its rate and burst
#: (``REPLACE``); the other per-user limiters only learn from it that a rate of 0 means "not
#: limited at all" (``EXEMPT_ONLY``).
REPLACE = "replace"
EXEMPT_ONLY = "exempt_only"


class RateLimitExceeded(MatrixError):
    def __init__(self, retry_after_ms: int, message: str = "Too Many Requests") -> None:
        super().__init__(429, Codes.LIMIT_EXCEEDED, message, retry_after_ms=retry_after_ms)
        self.retry_after_ms = retry_after_ms


class SharedBuckets(Protocol):
    """Token buckets every process shares (Redis)."""

    async def take(
        self, bucket: str, limit: RateLimit, cost: float, *, charge: bool
    ) -> float | None:
        """Take ``cost`` tokens from ``bucket`` (only look, unless ``charge``): ``0`` if they
        were there, the tokens missing if not, ``None`` if the shared buckets cannot be reached
        now (the caller uses its own)."""
        ...


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
        overrides: OverrideLookup | None = None,
        override_mode: str = EXEMPT_ONLY,
        name: str = "",
        shared: SharedBuckets | None = None,
    ) -> None:
        self._limit = limit
        #: the ``rc_*`` limiter this is (the Redis key's middle part).
        self.name = name
        self._shared = shared
        self._clock = clock
        self._exempt = exempt
        self._message = message
        self._overrides = overrides
        self._override_mode = override_mode
        #: key → (actions counted, when): the count leaks away at the limit's rate, so a
        #: user whose override changes the rate or burst is judged by it at once (Synapse).
        self._buckets: dict[str, tuple[float, float]] = {}
        self._calls = 0

    @property
    def burst_count(self) -> float:
        return self._limit.burst_count

    def _limit_for(self, key: str) -> RateLimit | None:
        """The limit applying to ``key`` (a user's override considered); None: not limited."""
        if key in self._exempt:
            return None
        override = None if self._overrides is None else self._overrides(key)
        if override is None:
            return self._limit
        per_second, burst = override
        if not per_second:
            return None
        if self._override_mode == REPLACE:
            return RateLimit(per_second=per_second, burst_count=burst)
        return self._limit

    def _used(self, key: str, now: float, limit: RateLimit) -> float:
        used, updated = self._buckets.get(key, (0.0, now))
        return max(0.0, used - (now - updated) * limit.per_second)

    def _tokens(self, key: str, now: float, limit: RateLimit) -> float:
        return limit.burst_count - self._used(key, now, limit)

    def is_exempt(self, user_id: str) -> bool:
        """Whether ``user_id`` is in ``rc_exempt_users`` or has an override of rate 0 (for
        buckets keyed by something else, such as a room or a device)."""
        return self._limit_for(user_id) is None

    async def check(self, key: str, *, cost: float = 1.0) -> None:
        """Take ``cost`` tokens from ``key``'s bucket, or raise :class:`RateLimitExceeded`."""
        await self._take(key, cost, charge=True)

    async def peek(self, key: str, *, cost: float = 1.0) -> None:
        """Raise like :meth:`check` if ``key`` could not act now, but take nothing (refuse
        early, and charge only for the action itself, e.g. a completed registration)."""
        await self._take(key, cost, charge=False)

    async def _take(self, key: str, cost: float, *, charge: bool) -> None:
        limit = self._limit_for(key)
        if limit is None:
            return
        if self._shared is not None:
            missing = await self._shared.take(f"{self.name}:{key}", limit, cost, charge=charge)
            if missing is not None:
                if missing > 0:
                    raise self._refusal(missing, limit)
                return
        self._take_local(key, cost, limit, charge=charge)

    def _take_local(self, key: str, cost: float, limit: RateLimit, *, charge: bool) -> None:
        now = self._clock()
        tokens = self._tokens(key, now, limit)
        if tokens < cost:
            raise self._refusal(cost - tokens, limit)
        if not charge:
            return
        self._buckets[key] = (limit.burst_count - tokens + cost, now)
        self._calls += 1
        if self._calls % self._SWEEP_EVERY == 0:
            self._sweep(now)

    def _refusal(self, missing: float, limit: RateLimit) -> RateLimitExceeded:
        per_second = limit.per_second
        wait = missing / per_second if per_second > 0 else 3600.0
        return RateLimitExceeded(max(1, math.ceil(wait * 1000)), self._message)

    def _sweep(self, now: float) -> None:
        # Buckets whose count has leaked away (at the default rate) are forgotten.
        full = [k for k in self._buckets if self._used(k, now, self._limit) <= 0]
        for key in full:
            del self._buckets[key]


class InviteLimiter:
    """Synapse's ``rc_invites``: an invite takes a token from the room's, the invitee's and the
    inviter's buckets. All three are checked before any is charged, so a refused invite costs
    nothing. An exempt inviter (``rc_exempt_users``) skips all three."""

    def __init__(
        self,
        per_room: TokenBucketLimiter,
        per_user: TokenBucketLimiter,
        per_issuer: TokenBucketLimiter,
    ) -> None:
        self._per_room = per_room
        self._per_user = per_user
        self._per_issuer = per_issuer

    async def check(self, inviter: str, room_id: str, invitee: str) -> None:
        if self._per_issuer.is_exempt(inviter):
            return
        buckets = (
            (self._per_room, room_id),
            (self._per_user, invitee),
            (self._per_issuer, inviter),
        )
        for limiter, key in buckets:
            await limiter.peek(key)
        for limiter, key in buckets:
            await limiter.check(key)

    async def check_received(self, invitee: str) -> None:
        """An invite from another server: only the invitee's bucket, as Synapse (the sending
        server limits its rooms and users)."""
        await self._per_user.check(invitee)

    async def check_new_room(self, creator: str, invites: int) -> None:
        """createRoom's invites, as Synapse: the room's bucket, keyed by the creator (the room
        has no ID yet), must hold them all; nothing is charged."""
        if invites and not self._per_room.is_exempt(creator):
            await self._per_room.peek(creator, cost=invites)


ROOM_CREATION_RATE_LIMITED = (
    "You have created too many rooms recently. Please wait before creating another."
)


class RateLimiters:
    """One limiter per ``rc_*`` section, keyed by user ID (or IP address before login)."""

    def __init__(
        self,
        config: RateLimitingConfig,
        *,
        clock: Clock = time.monotonic,
        exempt: frozenset[str] | None = None,
        overrides: OverrideLookup | None = None,
        shared: SharedBuckets | None = None,
    ) -> None:
        exempt = config.rc_exempt_users if exempt is None else exempt

        def make(
            name: str, limit: RateLimit, message: str = "Too Many Requests"
        ) -> TokenBucketLimiter:
            return TokenBucketLimiter(
                limit, clock=clock, exempt=exempt, message=message, name=name, shared=shared
            )

        def per_user(
            name: str, limit: RateLimit, message: str = "Too Many Requests", mode: str = EXEMPT_ONLY
        ) -> TokenBucketLimiter:
            """A limiter keyed by the requesting user: their admin override applies (Synapse
            passes the requester to these)."""
            return TokenBucketLimiter(
                limit,
                clock=clock,
                exempt=exempt,
                message=message,
                overrides=overrides,
                override_mode=mode,
                name=name,
                shared=shared,
            )

        self.room_creation = per_user(
            "room_creation", config.rc_room_creation, ROOM_CREATION_RATE_LIMITED
        )
        self.message = per_user("message", config.rc_message, mode=REPLACE)
        self.registration = make("registration", config.rc_registration)
        # Synapse does not limit shared-secret nonces; each is a row here, so they get a bucket
        # of their own shaped like rc_registration (one nonce per registration), per address.
        self.registration_nonce = make("registration_nonce", config.rc_registration)
        self.login_address = make("login_address", config.rc_login.address)
        self.login_account = make("login_account", config.rc_login.account)
        self.login_failed_attempts = make("login_failed", config.rc_login.failed_attempts)
        self.joins_local = per_user("joins_local", config.rc_joins.local)
        self.joins_remote = per_user("joins_remote", config.rc_joins.remote)
        # keyed by client address, not user
        self.remote_key_fetches = make("remote_key_fetches", config.rc_remote_key_fetches)
        invites = config.rc_invites
        self.invites = InviteLimiter(
            make("invites_room", invites.per_room),
            make("invites_user", invites.per_user),
            per_user("invites_issuer", invites.per_issuer),
        )
        self.to_device = per_user("to_device", config.rc_to_device)
        # Two buckets of rc_presence, as Synapse (PUT /presence and /sync's set_presence each
        # have their own limiter): a client's syncs never make its PUT fail.
        self.presence = per_user("presence", config.rc_presence.per_user)
        self.presence_sync = per_user("presence_sync", config.rc_presence.per_user)
        self.typing = per_user("typing", config.rc_typing)
        self.media_create = per_user("media_create", config.rc_media_create)
        # Synapse's rc_registration_token_validity default, per address.
        self.registration_token_validity = make(
            "registration_token_validity", RateLimit(per_second=0.1, burst_count=5)
        )
