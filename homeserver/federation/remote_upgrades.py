"""Room upgrades made by other servers, as seen from ours (DESIGN.md §3.2):

* a tombstone received over federation moves our copy of the room ``active → tombstoned``
  (actor ``federation``), remembering the replacement room;
* when one of our users joins a room whose ``m.room.create`` names a predecessor we have a copy
  of, their tags, ``m.direct`` entry and per-room push rules follow them, as after a local
  upgrade (``store.upgrades.copy_member_data_txn``);
* in the tombstone's own transaction, each local user joined to the old room (and not opted
  out) is queued to follow into the replacement (``federation/upgrade_follows.py`` joins them).
"""

from __future__ import annotations

import logging

from homeserver.clock import WallClock
from homeserver.events.event import Event
from homeserver.federation.upgrade_follows import OPT_OUT_TYPE, select_followers, via_servers
from homeserver.rooms.lifecycle import Actor, InvalidTransition, RoomStatus, transition
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.streams.notifier import Notifier
from homeserver.types import domain_of, room_id_error

logger = logging.getLogger(__name__)


class RemoteUpgrades:
    def __init__(
        self,
        *,
        store: Store,
        notifier: Notifier,
        clock: WallClock,
        server_name: str,
        follow: bool = True,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.clock = clock
        self.server_name = server_name
        #: ``room_upgrades.follow_remote_upgrades``: queue our joined users to follow.
        self.follow = follow

    # --- a tombstone from another server --------------------------------------------------------
    async def on_tombstone(self, room_id: str, event: Event) -> None:
        """``ReceivedEvents.tombstone_hook``: ``event`` is now the room's current tombstone."""
        moved = await self.store.db.run_in_transaction(
            "remote_tombstone", self._tombstone_txn, room_id, event
        )
        if moved:
            self.notifier.notify([room_id])

    async def _tombstone_txn(self, txn: Transaction, room_id: str, event: Event) -> bool:
        await self.store.persister.lock_rooms_txn(txn, [room_id])
        status = await self.store.room_use.get_room_status_txn(txn, room_id)
        if status is None:
            return False
        try:
            transition(RoomStatus(status), RoomStatus.TOMBSTONED, Actor.FEDERATION)
        except InvalidTransition:
            # Already tombstoned (a second tombstone), or our own upgrade holds the lock: that
            # upgrade's outcome decides; the refusal is logged by the state machine.
            return False
        replacement = event.content.get("replacement_room")
        valid = (
            isinstance(replacement, str)
            and room_id_error(replacement) is None
            and replacement != room_id
        )
        moved = await self.store.rooms.transition_txn(
            txn,
            room_id,
            RoomStatus.ACTIVE,
            RoomStatus.TOMBSTONED,
            actor=Actor.FEDERATION,
            reason=f"tombstone from {event.sender} received over federation",
            ts=self.clock(),
            replacement_room_id=replacement if valid else None,
        )
        if moved and valid and self.follow:
            assert isinstance(replacement, str)
            await self._queue_follows_txn(txn, room_id, replacement, event)
        return moved

    async def _queue_follows_txn(
        self, txn: Transaction, room_id: str, replacement: str, tombstone: Event
    ) -> None:
        """Our users joined to the old room right now (not opted out) follow it, through the
        tombstone's sender's server first."""
        follows = self.store.upgrade_follows
        joined = await follows.joined_members_txn(txn, room_id)
        local = [u for u in joined if domain_of(u) == self.server_name]
        if not local:
            return
        opt_outs = await follows.account_data_of_txn(txn, local, OPT_OUT_TYPE)
        users = select_followers(joined, self.server_name, opt_outs)
        via = via_servers(tombstone.sender, joined, replacement, self.server_name)
        added = await follows.queue_txn(txn, room_id, replacement, users, via, now=self.clock())
        logger.info(
            "%s was upgraded to %s by %s: %d of our users queued to follow (%d opted out)",
            room_id,
            replacement,
            tombstone.sender,
            added,
            len(local) - len(users),
        )

    # --- joining a successor room --------------------------------------------------------------
    async def on_joined(self, user_id: str, room_id: str) -> None:
        """After ``user_id`` joined ``room_id``: carry their per-room data over from the room it
        replaces, if we have a copy of that one."""
        create = await self.store.state.get_current_state_event(room_id, "m.room.create")
        predecessor = None if create is None else create.content.get("predecessor")
        old_room_id = predecessor.get("room_id") if isinstance(predecessor, dict) else None
        if not isinstance(old_room_id, str) or room_id_error(old_room_id) or old_room_id == room_id:
            return
        if await self.store.rooms.get_room(old_room_id) is None:
            return

        async def copy(txn: Transaction) -> int:
            return await self.store.upgrades.copy_member_data_txn(
                txn, old_room_id, room_id, [user_id]
            )

        copied = await self.store.db.run_in_transaction("copy_member_data_on_join", copy)
        if copied:
            logger.info(
                "carried %d entries of %s from %s to %s", copied, user_id, old_room_id, room_id
            )
            self.notifier.notify([room_id], [user_id])
