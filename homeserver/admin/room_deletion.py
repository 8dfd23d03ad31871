"""``DELETE /_synapse/admin/v2/rooms/{roomId}``: shut a room down and purge it, in the
background, with a status an admin can poll (Synapse's ``shutdown_room`` + ``purge_room``).

1. Block the room if asked (joins and invites refused from then on, even for an unknown room).
2. With ``new_room_user_id``: create a public room named ``room_name`` where users can read but
   not speak, to which the local members are moved.
3. Every local member leaves through the membership path (so the other servers in the room hear
   it) and forgets the room; joined ones join the new room. Failures are listed, not fatal.
4. The new room gets ``message``; the room's local aliases move there (or are removed), and the
   room leaves the public directory.
5. With ``purge`` (the default): every row of the room is deleted in one transaction; refused
   while local users are still joined unless ``force_purge``.

The request and its progress live in ``room_deletions`` (Synapse keeps them in its
scheduled-tasks table), so the status survives a restart, and an unfinished deletion is resumed
at start-up (each step is idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
from dataclasses import asdict, dataclass
from typing import Any

from homeserver.admin.task_registry import TaskRegistry
from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, MatrixError, NotFound
from homeserver.events.draft import EventDraft
from homeserver.media.repository import MediaRepository
from homeserver.rooms.creation import RateLimitPolicy, RoomCreationService
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.sender import EventSender
from homeserver.storage import Store
from homeserver.storage.admin_rooms import like_suffix
from homeserver.storage.room_deletions import DeletionRecord
from homeserver.storage.room_purge import LocalMembersRemain
from homeserver.streams.leases import LeaseKeeper
from homeserver.types import domain_of, user_id_error

logger = logging.getLogger(__name__)

DEFAULT_ROOM_NAME = "Content Violation Notification"
DEFAULT_MESSAGE = (
    "Sharing illegal content on this server is not permitted and rooms in violation will be"
    " blocked."
)
_ID_ALPHABET = string.ascii_letters


@dataclass(frozen=True, slots=True)
class DeletionParams:
    requester_user_id: str
    new_room_user_id: str | None = None
    new_room_name: str | None = None
    message: str | None = None
    block: bool = False
    purge: bool = True
    force_purge: bool = False


def _optional_string(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or "\x00" in value:
        raise BadRequest(f"Param '{key}' must be a string, if given", Codes.BAD_JSON)
    return value


def _flag(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise BadRequest(f"Param '{key}' must be a boolean, if given", Codes.BAD_JSON)
    return value


def parse_deletion_body(body: dict[str, Any], requester_user_id: str) -> DeletionParams:
    return DeletionParams(
        requester_user_id=requester_user_id,
        new_room_user_id=_optional_string(body, "new_room_user_id"),
        new_room_name=_optional_string(body, "room_name"),
        message=_optional_string(body, "message"),
        block=_flag(body, "block", False),
        purge=_flag(body, "purge", True),
        force_purge=_flag(body, "force_purge", False),
    )


def empty_result() -> dict[str, Any]:
    return {
        "kicked_users": [],
        "failed_to_kick_users": [],
        "local_aliases": [],
        "new_room_id": None,
    }


def status_json(record: DeletionRecord) -> dict[str, Any]:
    """One deletion as Synapse reports it (``error`` only when it failed)."""
    body: dict[str, Any] = {
        "delete_id": record.delete_id,
        "room_id": record.room_id,
        "status": record.status,
        "shutdown_room": record.result,
    }
    if record.error is not None:
        body["error"] = record.error
    return body


class RoomDeletionService:
    def __init__(
        self,
        *,
        store: Store,
        membership: MembershipService,
        room_creation: RoomCreationService,
        sender: EventSender,
        server_name: str,
        clock: WallClock,
        media: MediaRepository | None = None,
        leases: LeaseKeeper | None = None,
    ) -> None:
        self.store = store
        #: with several processes: a deletion runs only under its lease (``room_deletion:<id>``).
        self.leases = leases
        self._media = media
        self.membership = membership
        self.sender = sender
        self.server_name = server_name
        self.clock = clock
        self._room_creation = room_creation
        self._tasks = TaskRegistry()
        #: the deletions running here under their lease.
        self._under_lease: set[str] = set()

    # --- requests -----------------------------------------------------------------------------
    async def start(self, room_id: str, params: DeletionParams) -> str:
        """Record the deletion and start it; returns its ``delete_id``."""
        if params.new_room_user_id is not None:
            target = params.new_room_user_id
            if user_id_error(target, historical=True) or domain_of(target) != self.server_name:
                raise BadRequest(f"User must be our own: {target}", Codes.UNKNOWN)
            if await self.store.users.get_user(target) is None:
                raise NotFound(f"User {target} not found")
        delete_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))
        added = await self.store.room_deletions.add(
            delete_id, room_id, asdict(params), empty_result(), self.clock()
        )
        if not added:
            raise BadRequest(f"Purge already in progress for {room_id}", Codes.UNKNOWN)
        logger.info("starting deletion %s of room %s", delete_id, room_id)
        self._spawn(delete_id)
        return delete_id

    async def status(self, delete_id: str) -> dict[str, Any]:
        record = await self.store.room_deletions.get(delete_id)
        if record is None:
            raise NotFound(f"delete id '{delete_id}' not found")
        return status_json(record)

    async def status_for_room(self, room_id: str) -> dict[str, Any]:
        records = await self.store.room_deletions.get_for_room(room_id)
        if not records:
            raise NotFound(f"No delete task for room_id '{room_id}' found")
        return {"results": [status_json(r) for r in records]}

    # --- background tasks ---------------------------------------------------------------------
    def _spawn(self, delete_id: str) -> None:
        self._tasks.spawn(delete_id, self._leased(delete_id), name=f"room deletion {delete_id}")

    @staticmethod
    def lease_name(delete_id: str) -> str:
        return f"room_deletion:{delete_id}"

    async def _leased(self, delete_id: str) -> None:
        """Run the deletion if no other process is running it (its lease)."""
        if self.leases is None:
            await self._run(delete_id)
            return
        lease = self.lease_name(delete_id)
        if not await self.leases.try_acquire(lease):
            return  # another process runs it; resume() looks again if that one dies
        self._under_lease.add(delete_id)
        try:
            await self._run(delete_id)
        finally:
            self._under_lease.discard(delete_id)
            await self.leases.release(lease)

    async def resume(self) -> None:
        """Restart the deletions left unfinished: a previous run's, or (called again at every
        lease round) those of a process that stopped. A running one whose lease was lost is
        cancelled here: another process will finish it."""
        if self.leases is not None:
            for delete_id, task in self._tasks.items():
                lost = delete_id in self._under_lease and not self.leases.holds(
                    self.lease_name(delete_id)
                )
                if lost and not task.done():
                    logger.warning("deletion %s: lease lost, leaving it to another", delete_id)
                    task.cancel()
        for record in await self.store.room_deletions.get_unfinished():
            if record.delete_id not in self._tasks:
                logger.info("resuming deletion %s of room %s", record.delete_id, record.room_id)
                self._spawn(record.delete_id)

    async def wait(self, delete_id: str) -> None:
        """Until the deletion's task (if running in this process) has ended."""
        await self._tasks.wait(delete_id)

    async def wait_idle(self) -> None:
        """Until every deletion running in this process has ended (tests, shutdown)."""
        await self._tasks.wait_idle()

    async def stop(self) -> None:
        """Cancel running deletions (they stay unfinished and resume at the next start)."""
        await self._tasks.stop()

    async def _run(self, delete_id: str) -> None:
        record = await self.store.room_deletions.get(delete_id)
        if record is None:
            return
        params = DeletionParams(**record.params)
        result = dict(record.result)

        async def save(status: str, error: str | None = None) -> None:
            await self.store.room_deletions.update(
                delete_id, status=status, result=result, now=self.clock(), error=error
            )

        try:
            await save("active")
            await self._shutdown(record.room_id, params, result, save)
            if params.purge:
                # The media the room's events name, read before the purge forgets them; those
                # no other room's events name are deleted with the room.
                media = await self._media.media_of_room(record.room_id) if self._media else []
                await self.store.room_purge.purge_room(
                    record.room_id, like_suffix(self.server_name), force=params.force_purge
                )
                if self._media is not None and media:
                    deleted = await self._media.delete_unreferenced(media)
                    logger.info("room %s: %d media deleted with it", record.room_id, deleted)
        except asyncio.CancelledError:
            raise
        except LocalMembersRemain:
            await save("failed", "Users are still joined to this room")
            return
        except Exception as e:
            logger.exception("deletion %s of room %s failed", delete_id, record.room_id)
            message = e.message if isinstance(e, MatrixError) else "Internal error"
            await save("failed", message)
            return
        logger.info("deletion %s of room %s complete", delete_id, record.room_id)
        await save("complete")

    # --- the shutdown -------------------------------------------------------------------------
    async def _shutdown(
        self, room_id: str, params: DeletionParams, result: dict[str, Any], save: Any
    ) -> None:
        if params.block:
            await self.store.room_deletions.block_room(
                room_id, params.requester_user_id, self.clock()
            )
        if await self.store.rooms.get_room(room_id) is None:
            return  # nothing else to do for a room we do not know (it may just be blocked)
        new_room_id = result.get("new_room_id")
        if params.new_room_user_id is not None and new_room_id is None:
            created = await self._room_creation.create_room(
                params.new_room_user_id,
                {
                    "preset": "public_chat",
                    "name": params.new_room_name or DEFAULT_ROOM_NAME,
                    "power_level_content_override": {"users_default": -10},
                },
                rate_limit=RateLimitPolicy.EXEMPT,
            )
            new_room_id = result["new_room_id"] = created.room_id
            await save("active")
        done = set(result["kicked_users"]) | set(result["failed_to_kick_users"])
        memberships = await self.store.admin_rooms.get_local_memberships(room_id, self.server_name)
        for user_id, membership in sorted(memberships.items()):
            if membership not in ("join", "invite", "knock") or user_id in done:
                continue
            try:
                await self.membership.leave(user_id, room_id)
                await self.store.room_use.forget(user_id, room_id, self.clock())
                if new_room_id is not None and membership == "join":
                    await self.membership.join(user_id, new_room_id)
                result["kicked_users"].append(user_id)
            except Exception:
                logger.exception("could not move %s out of %s", user_id, room_id)
                result["failed_to_kick_users"].append(user_id)
            await save("active")
        await self._move_aliases(room_id, new_room_id, params, result)
        await self.store.rooms.set_public(room_id, False)
        await save("active")

    async def _move_aliases(
        self,
        room_id: str,
        new_room_id: str | None,
        params: DeletionParams,
        result: dict[str, Any],
    ) -> None:
        aliases = await self.store.aliases.get_aliases_for_room(room_id)
        # As Synapse: the room's local aliases, moved to the new room or else removed.
        result["local_aliases"] = sorted(set(result["local_aliases"]) | set(aliases))
        if new_room_id is None or params.new_room_user_id is None:
            # Nowhere to point them: an alias of a shut-down room would only mislead.
            async with self.store.db.transaction("delete_room_aliases") as txn:
                for alias in aliases:
                    await self.store.aliases.delete_alias_txn(txn, alias)
            return
        await self.sender.send(
            new_room_id,
            EventDraft(
                "m.room.message",
                params.new_room_user_id,
                {"body": params.message or DEFAULT_MESSAGE, "msgtype": "m.text"},
            ),
        )
        async with self.store.db.transaction("move_room_aliases") as txn:
            await self.store.aliases.move_aliases_txn(txn, room_id, new_room_id)
