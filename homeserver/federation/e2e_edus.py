"""The end-to-end encryption EDUs other servers send us in ``/send`` (spec: server-server API
"Send-to-device messaging", "Device Management", "End-to-End Encryption"):

* ``m.direct_to_device`` — to-device messages for our users' devices, written to their inbox.
  The EDU's ``message_id`` is recorded in the same database transaction as the delivery, so an
  EDU resent (in a retried or a new transaction) is delivered exactly once.
* ``m.device_list_update`` — one device of a remote user changed. When the update follows the
  last one we hold (its ``prev_id`` is our position) it is applied to the cached list; otherwise
  we missed some, so the list is marked stale (until then it answers nothing) and fetched again
  in the background (``GET user/devices``). Either way the change is recorded in the
  device-list stream, so our users' clients learn (``/sync`` ``device_lists.changed``) to query
  the user's keys again.
* ``m.signing_key_update`` — the user's master / self-signing keys changed; stored and recorded.

Each EDU must concern the sending server's own users, and device-list news only concerns us
while one of our users shares a room with its user (as Synapse). An EDU that is malformed or
fails is logged and skipped: it never fails the transaction — except when the database is
unavailable, which answers 503 so the sender retries the whole transaction later (the message
IDs keep that from delivering anything twice).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.clock import WallClock
from homeserver.federation.client import FederationError
from homeserver.federation.remote_keys import RemoteKeys, device_entry, valid_cross_signing_key
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.storage.errors import DatabaseUnavailable
from homeserver.storage.remote_device_lists import RemoteDeviceList
from homeserver.streams.notifier import Notifier
from homeserver.types import domain_of, user_id_error

logger = logging.getLogger(__name__)

#: How long a background resync waits for the remote server's ``user/devices`` answer.
RESYNC_TIMEOUT_SECONDS = 30.0
#: Longest device or message ID accepted from another server (real ones are a few characters).
MAX_ID_LENGTH = 255
MAX_STREAM_ID = 2**63 - 1
SIGNING_KEY_FIELDS = {"master_key": "master", "self_signing_key": "self_signing"}

EduHandler = Callable[[str, dict[str, Any]], Awaitable[None]]


class MalformedEdu(Exception):
    """The EDU's content does not have the shape its type requires."""


def _user_of(value: Any, server: str, what: str) -> str:
    """``value`` as a valid user ID of ``server``; MalformedEdu otherwise."""
    if not isinstance(value, str) or user_id_error(value, historical=True):
        raise MalformedEdu(f"{what} is not a user ID")
    if domain_of(value) != server:
        raise MalformedEdu(f"{what} {value} does not belong to {server}")
    return value


def _stream_id(value: Any, what: str) -> int:
    # Synapse sends integers; accept their decimal strings too (older senders). ASCII digits
    # only: "²".isdigit() is true but int("²") fails. Within BIGINT, where it is stored.
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_STREAM_ID:
        raise MalformedEdu(f"{what} is not a stream position")
    return value


def _identifier(value: Any, what: str) -> str:
    """``value`` as a device or message ID both databases can store and index: PostgreSQL
    text cannot hold NUL, and its b-tree keys are limited to about 2.7 kB."""
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH or "\x00" in value:
        raise MalformedEdu(f"{what} is missing or not a usable ID")
    return value


class E2EEdus:
    """Handles the E2E EDUs of a received transaction (``hs.e2e_edus``)."""

    def __init__(
        self,
        *,
        store: Store,
        remote_keys: RemoteKeys,
        notifier: Notifier,
        server_name: str,
        clock: WallClock,
    ) -> None:
        self.store = store
        self.remote_keys = remote_keys
        self.notifier = notifier
        self.server_name = server_name
        self.clock = clock
        self._handlers: dict[str, EduHandler] = {
            "m.direct_to_device": self.on_direct_to_device,
            "m.device_list_update": self.on_device_list_update,
            "m.signing_key_update": self.on_signing_key_update,
        }
        #: one remote user's device-list updates and resyncs happen one at a time: in this
        #: process (a lock lives while someone holds or waits for it; it saves the database
        #: round trips), and across processes under the user's advisory lock in each
        #: transaction, a resync storing its answer only if no update landed meanwhile.
        self._user_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        #: bumped at every update of a user while a resync of that user runs, so the resync
        #: does not store its (possibly older) answer over it. Both maps hold a user only while
        #: a resync of it is in flight: user IDs come from peers, nothing keyed by them stays.
        self._update_counts: dict[str, int] = {}
        self._resyncs_in_flight: dict[str, int] = {}
        self._resyncs: dict[str, asyncio.Task[None]] = {}
        self._resync_again: set[str] = set()

    async def on_edus(self, origin: str, edus: list[Any]) -> None:
        """Handle the EDUs of a transaction from ``origin`` in order; unknown types ignored."""
        for edu in edus:
            edu_type = edu.get("edu_type") if isinstance(edu, dict) else None
            handler = self._handlers.get(edu_type) if isinstance(edu_type, str) else None
            if handler is None:
                continue
            content = edu.get("content")
            if not isinstance(content, dict):
                logger.info("dropping %s from %s: content is not an object", edu_type, origin)
                continue
            try:
                await handler(origin, content)
            except DatabaseUnavailable:
                raise
            except MalformedEdu as e:
                logger.info("dropping %s from %s: %s", edu_type, origin, e)
            except Exception:
                logger.exception("failed to handle %s from %s", edu_type, origin)

    # --- m.direct_to_device -------------------------------------------------------------------
    async def on_direct_to_device(self, origin: str, content: dict[str, Any]) -> None:
        sender = _user_of(content.get("sender"), origin, "sender")
        message_type = content.get("type")
        message_id = _identifier(content.get("message_id"), "message_id")
        by_user = content.get("messages")
        if not isinstance(message_type, str) or not message_type:
            raise MalformedEdu("type is missing")
        if not isinstance(by_user, dict):
            raise MalformedEdu("messages is not an object")
        deliveries: dict[tuple[str, str], dict[str, Any]] = {}
        for user_id, by_device in by_user.items():
            if not isinstance(user_id, str) or user_id_error(user_id, historical=True):
                continue
            if domain_of(user_id) != self.server_name or not isinstance(by_device, dict):
                logger.info("to-device message from %s for %s is not for us", origin, user_id)
                continue
            devices = {d.device_id for d in await self.store.users.get_devices(user_id)}
            for device_id, body in by_device.items():
                if not isinstance(body, dict):
                    continue
                message = {"type": message_type, "sender": sender, "content": body}
                if device_id == "*":
                    for each in devices:  # a message named for one device wins over "*"
                        deliveries.setdefault((user_id, each), message)
                elif device_id in devices:
                    deliveries[(user_id, device_id)] = message
        async with self.store.db.transaction("receive_to_device") as txn:
            first_time = await self.store.device_inbox.record_received_message_txn(
                txn, origin, message_id, self.clock()
            )
            if not first_time or not deliveries:
                return
            await self.store.device_inbox.add_messages_txn(
                txn, [(u, d, m) for (u, d), m in deliveries.items()]
            )
        self.notifier.notify(user_ids={u for u, _ in deliveries})

    # --- m.device_list_update -----------------------------------------------------------------
    async def on_device_list_update(self, origin: str, content: dict[str, Any]) -> None:
        user_id = _user_of(content.get("user_id"), origin, "user_id")
        device_id = _identifier(content.get("device_id"), "device_id")
        stream_id = _stream_id(content.get("stream_id"), "stream_id")
        prev_ids_value = content.get("prev_id", [])
        if not isinstance(prev_ids_value, list):
            raise MalformedEdu("prev_id is not a list")
        prev_ids = [_stream_id(p, "prev_id") for p in prev_ids_value]
        if not await self._concerns_us(user_id):
            return
        deleted = content.get("deleted") is True
        entry = None if deleted else device_entry(user_id, device_id, content)

        async def run(txn: Transaction) -> tuple[bool, bool] | None:
            # (whether the update follows what we held, whether a resync is in flight), or
            # None when we hold it already.
            # Across processes: the user's updates one at a time (held until commit).
            await txn.advisory_lock(self.store.db.lock_key("device_list", user_id))
            held = await self.store.remote_device_lists.get_position_txn(txn, user_id)
            if held is not None and stream_id <= held:
                return None  # already part of what we hold (a resend, or a resync had it)
            follows = held is not None and bool(prev_ids) and all(p == held for p in prev_ids)
            if follows:
                await self.store.remote_device_lists.update_device_txn(
                    txn, user_id, device_id, entry, stream_id
                )
            else:
                await self.store.remote_device_lists.mark_stale_txn(txn, user_id)
            await self.store.device_lists.add_change_txn(txn, user_id, [device_id])
            return follows, user_id in self._resyncs_in_flight

        async with self._lock(user_id):
            # Retried: a deadlock with another process must not drop the update.
            outcome = await self.store.db.run_in_transaction("remote_device_list_update", run)
            if outcome is None:
                return
            follows, resyncing = outcome
            # Counted once committed (a re-run attempt must not count twice), and still under
            # the lock a resync compares the count under.
            if resyncing:
                self._update_counts[user_id] = self._update_counts.get(user_id, 0) + 1
        self.notifier.notify(user_ids=[user_id])
        if not follows:
            self._schedule_resync(user_id)

    # --- m.signing_key_update -----------------------------------------------------------------
    async def on_signing_key_update(self, origin: str, content: dict[str, Any]) -> None:
        user_id = _user_of(content.get("user_id"), origin, "user_id")
        keys = {
            usage: content[field]
            for field, usage in SIGNING_KEY_FIELDS.items()
            if valid_cross_signing_key(content.get(field), user_id, usage)
        }
        if not keys:
            raise MalformedEdu("no valid master_key or self_signing_key")
        if not await self._concerns_us(user_id):
            return

        async def run(txn: Transaction) -> None:
            position = await self.store.device_lists.add_change_txn(txn, user_id, [""])
            for usage, key in keys.items():
                await self.store.e2e_keys.set_cross_signing_key_txn(
                    txn, user_id, usage, key, position
                )

        # Retried: a deadlock with another process must not drop the update.
        await self.store.db.run_in_transaction("remote_signing_key_update", run)
        self.notifier.notify(user_ids=[user_id])

    # --- resync -------------------------------------------------------------------------------
    async def resync(self, user_id: str) -> bool:
        """Fetch the remote user's whole device list and store it; False if the server did not
        answer usefully or an update arrived meanwhile (the list stays stale: a resync for that
        update is already scheduled)."""
        try:
            return await self.resync_now(user_id, RESYNC_TIMEOUT_SECONDS) is not None
        except FederationError as e:
            logger.info("device list resync of %s failed: %s", user_id, e)
            return False

    async def resync_now(self, user_id: str, timeout_s: float) -> RemoteDeviceList | None:
        """:meth:`resync` for a key query waiting on it: the list as stored, None when an
        update arrived meanwhile; FederationError when the server fails."""
        self._resyncs_in_flight[user_id] = self._resyncs_in_flight.get(user_id, 0) + 1
        try:
            return await self._resync_watched(user_id, timeout_s)
        finally:
            left = self._resyncs_in_flight[user_id] - 1
            if left:
                self._resyncs_in_flight[user_id] = left
            else:
                del self._resyncs_in_flight[user_id]
                self._update_counts.pop(user_id, None)

    async def _resync_watched(self, user_id: str, timeout_s: float) -> RemoteDeviceList | None:
        seen_updates = self._update_counts.get(user_id, 0)
        # Updates applied by any process while the answer is on its way move this counter.
        seen_changes = await self.store.remote_device_lists.changes(user_id)
        answer = await self.remote_keys.user_devices(user_id, timeout_s)
        async with self._lock(user_id):
            if self._update_counts.get(user_id, 0) != seen_updates:
                return None
            changed = await self.store.db.run_in_transaction(
                "remote_device_list_resynced", self._store_resync_txn, user_id, seen_changes, answer
            )
            if changed is None:
                return None
            if changed:
                self.notifier.notify(user_ids=[user_id])
        after: dict[str, dict[str, Any]] = answer["devices"]
        return RemoteDeviceList(user_id, answer["stream_id"], False, dict(after))

    async def _store_resync_txn(
        self, txn: Transaction, user_id: str, seen_changes: int | None, answer: dict[str, Any]
    ) -> set[str] | None:
        """Store a resync's answer unless the user's list changed since it was asked (None);
        the devices that differ from what was held."""
        lists = self.store.remote_device_lists
        await txn.advisory_lock(self.store.db.lock_key("device_list", user_id))
        if await lists.changes_txn(txn, user_id) != seen_changes:
            return None  # an update landed meanwhile (maybe on another process)
        tracked = seen_changes is not None
        before = await lists.devices_txn(txn, user_id) if tracked else None
        # add_change_txn's lock on the user before the cross-signing keys' rows: the order an
        # m.signing_key_update (which takes no "device_list" lock) takes them in.
        await self.store.device_lists.lock_users_txn(txn, [user_id])
        await lists.replace_txn(
            txn, user_id, answer["stream_id"], answer["devices"], answer["cross_signing"]
        )
        after: dict[str, dict[str, Any]] = answer["devices"]
        changed = (
            set()
            if before is None
            else {d for d in {*before, *after} if before.get(d) != after.get(d)}
        )
        if changed:
            # Clients that asked while the list was stale got the server's answer; tell them
            # again only when the list really differs from what we held.
            await self.store.device_lists.add_change_txn(txn, user_id, changed)
        return changed

    def _schedule_resync(self, user_id: str) -> None:
        if user_id in self._resyncs:
            self._resync_again.add(user_id)
            return
        self._resyncs[user_id] = asyncio.create_task(self._resync_loop(user_id))

    async def _resync_loop(self, user_id: str) -> None:
        try:
            while True:
                self._resync_again.discard(user_id)
                try:
                    await self.resync(user_id)
                except Exception:
                    logger.exception("device list resync of %s failed", user_id)
                if user_id not in self._resync_again:
                    return
        finally:
            del self._resyncs[user_id]

    async def wait_for_resyncs(self) -> None:
        """Wait until the background resyncs have finished (tests, shutdown)."""
        while self._resyncs:
            await asyncio.gather(*self._resyncs.values(), return_exceptions=True)

    async def stop(self) -> None:
        for task in list(self._resyncs.values()):
            task.cancel()
        await asyncio.gather(*self._resyncs.values(), return_exceptions=True)

    # --- helpers ------------------------------------------------------------------------------
    def _lock(self, user_id: str) -> asyncio.Lock:
        return self._user_locks.setdefault(user_id, asyncio.Lock())

    async def _concerns_us(self, user_id: str) -> bool:
        shared = await self.store.device_lists.local_users_share_a_room_with(
            user_id, self.server_name
        )
        if not shared:
            logger.info("ignoring a device update of %s: no local user shares a room", user_id)
        return shared
