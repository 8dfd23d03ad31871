"""Room creation (DESIGN.md §3.1) as named steps, each callable alone:

1. :func:`parse_body` — the body's shape and every field's type (cheap, no I/O);
2. rate limit — the requester's ``rc_room_creation`` bucket. It comes after the shape check so a
   malformed body costs no token, and before the rest so a flood of requests is turned away before
   it reaches the database;
3. :func:`validate_request` — room version supported, alias well formed, invitees acceptable,
   third-party invites possible; then :func:`check_alias_free` (one read);
4. :func:`plan` — the genesis drafts in the spec's order (``creation_plan.plan_genesis``);
5. :func:`build_genesis` — every event hashed, signed and auth-checked in memory, so a request
   whose implied state is invalid, or whose events are too large, is refused before any write;
6. :func:`commit_genesis_txn` — room row, events, state, alias, directory flag and outbox entries
   for remote invitees in ONE transaction: a crash leaves the whole room or nothing;
7. after commit — wake /sync and publish ``room.created`` on the domain-event bus.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from http import HTTPStatus
from typing import Any

import asyncpg

from homeserver.auth.rules import AuthError
from homeserver.clock import WallClock
from homeserver.config import HomeserverConfig
from homeserver.errors import BadRequest, Codes, MatrixError, UnsupportedRoomVersionError
from homeserver.events.builder import Signer
from homeserver.events.event import Event
from homeserver.events.ids import new_room_id
from homeserver.events.validation import EventValidationError
from homeserver.faults import fault_point
from homeserver.ratelimit import InviteLimiter, RateLimitExceeded, TokenBucketLimiter
from homeserver.room_versions import RoomVersion, UnsupportedRoomVersion, get_room_version
from homeserver.rooms.bus import ROOM_CREATE_RATE_LIMITED, ROOM_CREATED, DomainEventBus
from homeserver.rooms.create_request import CreateRoomRequest, parse_create_room_request
from homeserver.rooms.creation_plan import CreationPolicy, GenesisPlan, plan_genesis
from homeserver.rooms.presets import EncryptionPolicy
from homeserver.rooms.sender import BatchBuilder
from homeserver.rooms.shadow_ban import suspended_error
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.storage.rooms import NewRoom
from homeserver.streams.fanout import enqueue_remote_invites_txn
from homeserver.streams.notifier import Notifier
from homeserver.types import room_alias_error, user_id_error

#: the whole invite list of a createRoom must fit ``rc_invites.per_room``'s burst.
TOO_MANY_INVITES = "Cannot invite so many users at once"

logger = logging.getLogger(__name__)

#: How many room IDs are tried before giving up (a collision is astronomically unlikely; more
#: than a few in a row means something else is wrong).
MAX_ROOM_ID_ATTEMPTS = 5

#: ``displayname`` / ``avatar_url`` of a local user, only the keys that are set
#: (``ProfileService.get_profile``).
ProfileLookup = Callable[[str], Awaitable[Mapping[str, Any]]]


class RoomIdCollision(Exception):
    """The room ID picked for a new room already exists (internal: triggers a retry)."""


def alias_in_use() -> BadRequest:
    return BadRequest("Room alias already taken", Codes.ROOM_IN_USE)


@dataclass(frozen=True, slots=True)
class ValidatedCreation:
    request: CreateRoomRequest
    room_version: RoomVersion
    #: the full alias to claim, ``#localpart:server_name``.
    alias: str | None


@dataclass(frozen=True, slots=True)
class CreatedRoom:
    room_id: str
    room_version: str
    alias: str | None
    events: tuple[Event, ...]


# --- step 1: validate -------------------------------------------------------------------------
def parse_body(body: Any) -> CreateRoomRequest:
    """The body's shape: every field's type and value (400 naming the field)."""
    return parse_create_room_request(body)


def _invalid(field: str, reason: str) -> BadRequest:
    return BadRequest(f"{field}: {reason}", Codes.INVALID_PARAM)


def validate_request(
    request: CreateRoomRequest,
    *,
    creator: str,
    server_name: str,
    default_room_version: str,
    identity_server_configured: bool = False,
) -> ValidatedCreation:
    """Everything about the request that needs no database."""
    identifier = request.room_version or default_room_version
    try:
        room_version = get_room_version(identifier)
    except UnsupportedRoomVersion:
        raise UnsupportedRoomVersionError() from None
    alias = None
    if request.room_alias_name is not None:
        alias = f"#{request.room_alias_name}:{server_name}"
        reason = room_alias_error(alias)
        if reason:
            raise _invalid("room_alias_name", reason)
    for index, invitee in enumerate(request.invite):
        if invitee == creator:
            # The creator is already joined; an invite would fail the auth rules mid-genesis.
            raise _invalid(f"invite[{index}]", "you cannot invite yourself")
    if request.invite_3pid and not identity_server_configured:
        # Third-party invites need an identity server to bind the address; without one the
        # invite could never be honoured, so refuse before creating anything.
        raise _invalid("invite_3pid", "third-party invites are not supported by this server")
    if room_version.has_additional_creators and "additional_creators" in request.creation_content:
        extra = request.creation_content["additional_creators"]
        if not isinstance(extra, list):
            raise _invalid("creation_content.additional_creators", "must be an array")
        for index, user_id in enumerate(extra):
            reason = user_id_error(user_id) if isinstance(user_id, str) else "not a string"
            if reason:
                raise _invalid(f"creation_content.additional_creators[{index}]", reason)
    return ValidatedCreation(request, room_version, alias)


async def check_alias_free(store: Store, alias: str | None) -> None:
    """400 ``M_ROOM_IN_USE`` if ``alias`` is taken (re-checked atomically at commit)."""
    if alias is not None and await store.aliases.get_alias(alias) is not None:
        raise alias_in_use()


# --- step 3: plan -----------------------------------------------------------------------------
def creation_policy(config: HomeserverConfig) -> CreationPolicy:
    rooms = config.rooms
    return CreationPolicy(
        encryption=EncryptionPolicy(str(rooms.encryption_enabled_by_default_for_room_type)),
        default_power_level_overrides={
            preset: dict(content)
            for preset, content in rooms.default_power_level_content_override.items()
        },
    )


def plan(
    validated: ValidatedCreation,
    *,
    creator: str,
    server_name: str,
    policy: CreationPolicy,
    creator_profile: Mapping[str, Any] | None = None,
) -> GenesisPlan:
    return plan_genesis(
        validated.request,
        room_version=validated.room_version,
        creator=creator,
        server_name=server_name,
        policy=policy,
        creator_profile=dict(creator_profile or {}),
    )


# --- step 4: build ----------------------------------------------------------------------------
def build_genesis(
    genesis: GenesisPlan,
    signer: Signer,
    room_id: str | None,
    clock: WallClock,
) -> list[Event]:
    """Build every genesis event in memory, auth-checking each on the state so far.

    ``room_id`` is None for versions whose room ID is the create event's hash. A refused event
    is 400 ``M_INVALID_ROOM_STATE`` naming its type; a malformed one (too large, floats in a
    strict-JSON version…) is 400 ``M_BAD_JSON``."""
    room_version = genesis.room_version
    batch = BatchBuilder(
        room_version,
        signer,
        None if room_version.room_id_is_create_event_hash else room_id,
        clock=clock,
    )
    for draft in (genesis.create, *genesis.drafts):
        try:
            batch.add(draft)
        except AuthError as e:
            what = draft.type if not draft.state_key else f"{draft.type} ({draft.state_key})"
            raise BadRequest(
                f"The requested initial state is invalid: {what} would be refused ({e.reason})",
                Codes.INVALID_ROOM_STATE,
            ) from None
        except EventValidationError as e:
            raise BadRequest(f"Invalid {draft.type} event: {e.reason}", Codes.BAD_JSON) from None
    return batch.events


# --- step 5: commit ---------------------------------------------------------------------------
async def room_exists_txn(txn: Transaction, room_id: str) -> bool:
    return await txn.fetchval("SELECT 1 FROM rooms WHERE room_id = ?", room_id) is not None


async def commit_genesis_txn(
    txn: Transaction,
    store: Store,
    events: list[Event],
    *,
    creator: str,
    alias: str | None,
    is_public: bool,
    server_name: str,
) -> None:
    """Write the whole room in the caller's transaction; raise to roll it all back."""
    create = events[0]
    room_id = create.room_id
    if await room_exists_txn(txn, room_id):
        raise RoomIdCollision(room_id)
    new_room = NewRoom(
        room_id,
        create.room_version.identifier,
        creator,
        create.origin_server_ts,
        is_public=is_public,
    )
    await store.persist_events_txn(txn, [(event, None) for event in events], new_room=new_room)
    if alias is not None and not await store.aliases.create_alias_txn(
        txn, alias, room_id, creator, create.origin_server_ts
    ):
        raise alias_in_use()  # claimed since the check: roll the room back too
    # Remote invitees learn of their invite through the federation sender, which delivers
    # from the outbox durably (queued with the room so a crash loses neither).
    await enqueue_remote_invites_txn(txn, store, events, our_server=server_name)


def _is_unique_violation(error: BaseException) -> bool:
    return isinstance(error, sqlite3.IntegrityError | asyncpg.UniqueViolationError)


class RateLimitPolicy(Enum):
    """Whether a new room counts against its creator's ``rc_room_creation`` bucket."""

    #: a client's createRoom: checked and counted.
    CREATOR = "creator"
    #: a room the server makes on an admin's behalf (room deletion's new room): neither checked
    #: nor counted, as Synapse's ``ratelimit=False``.
    EXEMPT = "exempt"


class RoomCreationService:
    def __init__(
        self,
        *,
        config: HomeserverConfig,
        store: Store,
        signer: Signer,
        ratelimiter: TokenBucketLimiter,
        notifier: Notifier,
        bus: DomainEventBus,
        clock: WallClock,
        profiles: ProfileLookup | None = None,
        invite_limiter: InviteLimiter | None = None,
        suspended: Callable[[str], bool] = lambda _user_id: False,
        shadow_banned: Callable[[str], bool] = lambda _user_id: False,
    ) -> None:
        #: a suspended user may not create rooms; a shadow-banned one's room is made without
        #: its invites, which are answered as sent (rooms/shadow_ban.py, as Synapse).
        self._suspended = suspended
        self._shadow_banned = shadow_banned
        self.config = config
        self.invite_limiter = invite_limiter
        self.store = store
        self.signer = signer
        self.ratelimiter = ratelimiter
        self.notifier = notifier
        self.bus = bus
        self.clock = clock
        self.profiles = profiles
        self.policy = creation_policy(config)
        self._last_genesis_ms = 0

    def _unique_ms(self) -> int:
        self._last_genesis_ms = max(self.clock(), self._last_genesis_ms + 1)
        return self._last_genesis_ms

    @property
    def server_name(self) -> str:
        return self.config.server_name

    async def create_room(
        self, creator: str, body: Any, *, rate_limit: RateLimitPolicy = RateLimitPolicy.CREATOR
    ) -> CreatedRoom:
        request = parse_body(body)
        if rate_limit is RateLimitPolicy.CREATOR and self._suspended(creator):
            raise suspended_error("Creating rooms")
        if rate_limit is RateLimitPolicy.CREATOR and self._shadow_banned(creator):
            request = dataclasses.replace(request, invite=(), invite_3pid=())
        if self.invite_limiter is not None:
            try:
                await self.invite_limiter.check_new_room(
                    creator, len(request.invite) + len(request.invite_3pid)
                )
            except RateLimitExceeded:
                # Synapse's answer, which clients and bots match on to retry without invites.
                raise BadRequest(TOO_MANY_INVITES, Codes.UNKNOWN) from None
        if rate_limit is RateLimitPolicy.CREATOR:
            try:
                await self.ratelimiter.check(creator)
            except RateLimitExceeded:
                await self.bus.publish(ROOM_CREATE_RATE_LIMITED, user_id=creator)
                raise
        validated = validate_request(
            request,
            creator=creator,
            server_name=self.server_name,
            default_room_version=self.config.server.default_room_version,
        )
        await check_alias_free(self.store, validated.alias)
        fault_point("create.validated")
        genesis = plan(
            validated,
            creator=creator,
            server_name=self.server_name,
            policy=self.policy,
            creator_profile=await self._profile(creator),
        )
        events = await self._build_and_commit(creator, validated, genesis)
        fault_point("create.committed")
        await self._after_commit(creator, validated, events)
        return CreatedRoom(
            events[0].room_id, validated.room_version.identifier, validated.alias, tuple(events)
        )

    async def _profile(self, user_id: str) -> Mapping[str, Any]:
        if self.profiles is None:
            return {}
        try:
            return await self.profiles(user_id)
        except MatrixError:
            return {}  # no profile yet: the join simply carries none

    async def _build_and_commit(
        self, creator: str, validated: ValidatedCreation, genesis: GenesisPlan
    ) -> list[Event]:
        for _attempt in range(MAX_ROOM_ID_ATTEMPTS):
            room_id = new_room_id(self.server_name)

            # A v12 room ID is the create event's hash: two rooms created by one user in the
            # same millisecond with the same content would collide, so every genesis (and
            # every retry) starts at a timestamp this process has not used before.
            start = self._unique_ms()

            def clock(start: int = start) -> int:
                return start

            events = build_genesis(genesis, self.signer, room_id, clock)
            fault_point("create.built")
            try:
                await self.store.db.run_in_transaction(
                    "create_room",
                    self._commit,
                    events,
                    creator,
                    validated,
                    shared_commit=True,
                )
            except RoomIdCollision:
                logger.warning("room ID %s already exists; retrying", events[0].room_id)
                continue
            except Exception as e:
                if not _is_unique_violation(e):
                    raise
                # Another writer took the same room ID between our check and insert.
                logger.warning("room ID collision on insert (%s); retrying", type(e).__name__)
                continue
            return events
        logger.error("could not allocate a unique room ID after %d tries", MAX_ROOM_ID_ATTEMPTS)
        raise MatrixError(
            HTTPStatus.INTERNAL_SERVER_ERROR, Codes.UNKNOWN, "Could not allocate a room ID"
        )

    async def _commit(
        self, txn: Transaction, events: list[Event], creator: str, validated: ValidatedCreation
    ) -> None:
        await commit_genesis_txn(
            txn,
            self.store,
            events,
            creator=creator,
            alias=validated.alias,
            is_public=validated.request.visibility == "public",
            server_name=self.server_name,
        )
        fault_point("create.committing")

    async def _after_commit(
        self, creator: str, validated: ValidatedCreation, events: list[Event]
    ) -> None:
        room_id = events[0].room_id
        self.notifier.notify([room_id], [creator, *validated.request.invite])
        await self.bus.publish(
            ROOM_CREATED,
            room_id=room_id,
            creator_id=creator,
            preset=str(validated.request.preset),
            room_version=validated.room_version.identifier,
        )
