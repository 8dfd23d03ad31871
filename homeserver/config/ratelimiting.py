"""The ``rc_*`` token-bucket limits, with Synapse's defaults and Synapse's shapes.

``rc_login`` has ``address``, ``account`` and ``failed_attempts`` buckets, ``rc_joins`` has
``local`` and ``remote`` and ``rc_invites`` has ``per_room``, ``per_user`` and ``per_issuer``, as
in Synapse. For convenience a flat ``{per_second, burst_count}``
there sets all of that key's buckets at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TypeVar

from homeserver.config._reader import Reader
from homeserver.types import user_id_error

KEYS = frozenset(
    {
        "rc_room_creation",
        "rc_message",
        "rc_login",
        "rc_registration",
        "rc_joins",
        "rc_exempt_users",
        "rc_remote_key_fetches",
        "rc_invites",
        "rc_to_device",
        "rc_presence",
        "rc_typing",
        "rc_media_create",
    }
)


@dataclass(frozen=True, slots=True)
class RateLimit:
    #: Tokens refilled per second.
    per_second: float
    #: Bucket size: how many actions may happen at once after a quiet period.
    burst_count: float


@dataclass(frozen=True, slots=True)
class LoginRateLimits:
    address: RateLimit
    account: RateLimit
    failed_attempts: RateLimit


@dataclass(frozen=True, slots=True)
class JoinRateLimits:
    local: RateLimit
    remote: RateLimit


@dataclass(frozen=True, slots=True)
class InviteRateLimits:
    """Synapse's ``rc_invites``: buckets per room, per invitee and per inviter."""

    per_room: RateLimit
    per_user: RateLimit
    per_issuer: RateLimit


@dataclass(frozen=True, slots=True)
class PresenceRateLimits:
    """Synapse's ``rc_presence``: presence updates per user (PUT /presence and /sync's
    ``set_presence``)."""

    per_user: RateLimit


@dataclass(frozen=True, slots=True)
class RateLimitingConfig:
    rc_room_creation: RateLimit
    rc_message: RateLimit
    rc_login: LoginRateLimits
    rc_registration: RateLimit
    rc_joins: JoinRateLimits
    #: users no ``rc_*`` limit applies to (bridges, bots); our key — Synapse does this per user
    #: through its admin API.
    rc_exempt_users: frozenset[str] = frozenset()
    #: per client address: key fetches an unauthenticated caller may make us do (notary
    #: queries, one token per remote server name; X-Matrix requests from origins whose keys we
    #: must fetch). Our key: Synapse limits neither.
    rc_remote_key_fetches: RateLimit = field(default_factory=lambda: DEFAULT_REMOTE_KEY_FETCHES)
    rc_invites: InviteRateLimits = field(default_factory=lambda: DEFAULT_INVITES)
    #: ``/sendToDevice`` requests per sending device (our key, see DEFAULT_TO_DEVICE).
    rc_to_device: RateLimit = field(default_factory=lambda: DEFAULT_TO_DEVICE)
    rc_presence: PresenceRateLimits = field(default_factory=lambda: DEFAULT_PRESENCE)
    #: typing notifications per user (our key, see DEFAULT_TYPING).
    rc_typing: RateLimit = field(default_factory=lambda: DEFAULT_TYPING)
    #: media uploads and ``POST /media/v1/create`` per user (Synapse limits only the latter).
    rc_media_create: RateLimit = field(default_factory=lambda: DEFAULT_MEDIA_CREATE)


# Synapse 1.157's defaults (docs/usage/configuration/config_documentation.md).
DEFAULT_ROOM_CREATION = RateLimit(0.016, 10)
DEFAULT_MESSAGE = RateLimit(0.2, 10)
DEFAULT_REGISTRATION = RateLimit(0.17, 3)
DEFAULT_LOGIN = LoginRateLimits(
    address=RateLimit(0.003, 5), account=RateLimit(0.003, 5), failed_attempts=RateLimit(0.17, 3)
)
DEFAULT_JOINS = JoinRateLimits(local=RateLimit(0.1, 10), remote=RateLimit(0.01, 10))
#: A notary's honest callers ask now and then; one bucket covers a full notary request.
DEFAULT_REMOTE_KEY_FETCHES = RateLimit(1.0, 50)
DEFAULT_INVITES = InviteRateLimits(
    per_room=RateLimit(0.3, 10), per_user=RateLimit(0.003, 5), per_issuer=RateLimit(0.3, 10)
)
# Synapse has no general to-device limit: its (undocumented) rc_key_requests, per sending device,
# silently drops cross-user room-key requests past 20/s, burst 100. We answer 429 to every
# /sendToDevice request past the same numbers, per sending device, so no client can flood inboxes.
DEFAULT_TO_DEVICE = RateLimit(20, 100)
DEFAULT_PRESENCE = PresenceRateLimits(per_user=RateLimit(0.1, 1))
# Synapse does not limit typing notifications; a client sends one every few seconds per room it
# types in, so 2/s with a burst of 20 never stops a person and bounds what a script can make us
# send to every server of a room.
DEFAULT_TYPING = RateLimit(2, 20)
# Synapse's rc_media_create default.
DEFAULT_MEDIA_CREATE = RateLimit(10, 50)


def _limit(reader: Reader, default: RateLimit) -> RateLimit:
    limit = RateLimit(
        per_second=reader.number("per_second", default.per_second, minimum=0),
        burst_count=reader.number("burst_count", default.burst_count, minimum=1),
    )
    reader.warn_unknown()
    return limit


def _is_flat(reader: Reader) -> bool:
    return "per_second" in reader.data or "burst_count" in reader.data


_Grouped = TypeVar(
    "_Grouped", LoginRateLimits, JoinRateLimits, InviteRateLimits, PresenceRateLimits
)


def _grouped(reader: Reader, key: str, default: _Grouped) -> _Grouped:
    """A section of several limits (``rc_login``, ``rc_joins``, ``rc_invites``): one named
    sub-section per field of ``default``, or a flat ``{per_second, burst_count}`` that sets them
    all (read against the first field's default)."""
    section = reader.sub(key)
    names = [f.name for f in fields(default)]
    if _is_flat(section):
        flat = _limit(section, getattr(default, names[0]))
        return type(default)(*(flat for _ in names))
    limits = type(default)(
        **{name: _limit(section.sub(name), getattr(default, name)) for name in names}
    )
    section.warn_unknown()
    return limits


def parse_ratelimiting(reader: Reader) -> RateLimitingConfig:
    return RateLimitingConfig(
        rc_room_creation=_limit(reader.sub("rc_room_creation"), DEFAULT_ROOM_CREATION),
        rc_message=_limit(reader.sub("rc_message"), DEFAULT_MESSAGE),
        rc_login=_grouped(reader, "rc_login", DEFAULT_LOGIN),
        rc_registration=_limit(reader.sub("rc_registration"), DEFAULT_REGISTRATION),
        rc_joins=_grouped(reader, "rc_joins", DEFAULT_JOINS),
        rc_exempt_users=_exempt_users(reader),
        rc_remote_key_fetches=_limit(
            reader.sub("rc_remote_key_fetches"), DEFAULT_REMOTE_KEY_FETCHES
        ),
        rc_invites=_grouped(reader, "rc_invites", DEFAULT_INVITES),
        rc_to_device=_limit(reader.sub("rc_to_device"), DEFAULT_TO_DEVICE),
        rc_presence=_grouped(reader, "rc_presence", DEFAULT_PRESENCE),
        rc_typing=_limit(reader.sub("rc_typing"), DEFAULT_TYPING),
        rc_media_create=_limit(reader.sub("rc_media_create"), DEFAULT_MEDIA_CREATE),
    )


def _exempt_users(reader: Reader) -> frozenset[str]:
    users = reader.string_list("rc_exempt_users", []) or []
    for index, user_id in enumerate(users):
        reason = user_id_error(user_id, historical=True)
        if reason:
            raise reader.error(f"rc_exempt_users[{index}]", reason)
    return frozenset(users)
