"""Per-key token buckets (``rc_*`` config sections).

Each key (a user ID, or an IP for unauthenticated endpoints) owns a bucket of ``burst_count``
tokens refilled at ``per_second``; an action takes one token. A refused action learns how long
until a token is back, for ``retry_after_ms`` and ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from homeserver.config.ratelimiting import RateLimit, RateLimitingConfig
from homeserver.errors import Codes, MatrixError

Clock = Callable[[], float]


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

    @property
    def burst_count(self) -> float:
        return self._limit.burst_count

    def _tokens(self, key: str, now: float) -> float:
        tokens, updated = self._buckets.get(key, (self._limit.burst_count, now))
        return min(self._limit.burst_count, tokens + (now - updated) * self._limit.per_second)

    def is_exempt(self, user_id: str) -> bool:
        """Whether ``user_id`` is in ``rc_exempt_users`` (for buckets keyed by something else,
        such as a room or a device)."""
        return user_id in self._exempt

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

    def peek(self, key: str, *, cost: float = 1.0) -> None:
        """Raise like :meth:`check` if ``key`` could not act now, but take nothing (refuse
        early, and charge only for the action itself, e.g. a completed registration)."""
        if key in self._exempt:
            return
        tokens = self._tokens(key, self._clock())
        if tokens < cost:
            missing = cost - tokens
            wait = missing / self._limit.per_second if self._limit.per_second > 0 else 3600.0
            raise RateLimitExceeded(max(1, math.ceil(wait * 1000)), self._message)

    def _sweep(self, now: float) -> None:
        full = [k for k in self._buckets if self._tokens(k, now) >= self._limit.burst_count]
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

    def check(self, inviter: str, room_id: str, invitee: str) -> None:
        if self._per_issuer.is_exempt(inviter):
            return
        buckets = (
            (self._per_room, room_id),
            (self._per_user, invitee),
            (self._per_issuer, inviter),
        )
        for limiter, key in buckets:
            limiter.peek(key)
        for limiter, key in buckets:
            limiter.check(key)

    def check_received(self, invitee: str) -> None:
        """An invite from another server: only the invitee's bucket, as Synapse (the sending
        server limits its rooms and users)."""
        self._per_user.check(invitee)

    def check_new_room(self, creator: str, invites: int) -> None:
        """createRoom's invites, as Synapse: the room's bucket, keyed by the creator (the room
        has no ID yet), must hold them all; nothing is charged."""
        if invites and not self._per_room.is_exempt(creator):
            self._per_room.peek(creator, cost=invites)


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
    ) -> None:
        exempt = config.rc_exempt_users if exempt is None else exempt

        def make(limit: RateLimit, message: str = "Too Many Requests") -> TokenBucketLimiter:
            return TokenBucketLimiter(limit, clock=clock, exempt=exempt, message=message)

        self.room_creation = make(config.rc_room_creation, ROOM_CREATION_RATE_LIMITED)
        self.message = make(config.rc_message)
        self.registration = make(config.rc_registration)
        # Synapse does not limit shared-secret nonces; each is a row here, so they get a bucket
        # of their own shaped like rc_registration (one nonce per registration), per address.
        self.registration_nonce = make(config.rc_registration)
        self.login_address = make(config.rc_login.address)
        self.login_account = make(config.rc_login.account)
        self.login_failed_attempts = make(config.rc_login.failed_attempts)
        self.joins_local = make(config.rc_joins.local)
        self.joins_remote = make(config.rc_joins.remote)
        # keyed by client address, not user
        self.remote_key_fetches = make(config.rc_remote_key_fetches)
        invites = config.rc_invites
        self.invites = InviteLimiter(
            make(invites.per_room), make(invites.per_user), make(invites.per_issuer)
        )
        self.to_device = make(config.rc_to_device)
        # Two buckets of rc_presence, as Synapse (PUT /presence and /sync's set_presence each
        # have their own limiter): a client's syncs never make its PUT fail.
        self.presence = make(config.rc_presence.per_user)
        self.presence_sync = make(config.rc_presence.per_user)
        self.typing = make(config.rc_typing)
        self.media_create = make(config.rc_media_create)
