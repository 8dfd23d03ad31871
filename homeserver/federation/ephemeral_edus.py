"""The ephemeral EDUs other servers send us in ``/send`` (spec: server-server API "Typing
Notifications", "Receipts", "Presence"):

* ``m.typing`` — a remote user started or stopped typing (:class:`TypingService`).
* ``m.receipt`` — remote users' public read receipts (``m.read``), stored beside our users' and
  shown in /sync; the event they name need not be known to us (as Synapse).
* ``m.presence`` — remote users' presence (:class:`PresenceService`).

Each update must concern the sending server's own users; typing and receipts only those joined
to the room, in a room whose server ACL admits the sender; presence only users sharing a room
with one of ours. What fails a check is logged and skipped: one bad EDU never fails the
transaction (except a database outage: 503, the sender retries).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.clock import WallClock
from homeserver.ephemeral.presence import PresenceService
from homeserver.ephemeral.typing import TypingService
from homeserver.federation.acl import ACL_EVENT_TYPE, server_allowed_by_acl
from homeserver.storage import Store
from homeserver.storage.errors import DatabaseUnavailable
from homeserver.storage.receipts import Receipt
from homeserver.streams.edus import PRESENCE_EDU, RECEIPT_EDU, TYPING_EDU
from homeserver.streams.notifier import Notifier
from homeserver.types import domain_of, event_id_error, room_id_error, user_id_error

logger = logging.getLogger(__name__)

#: Only public read receipts travel between servers (m.read.private never leaves its server).
FEDERATED_RECEIPT_TYPES = frozenset({"m.read"})
#: Rooms, and users per room, read from one m.receipt EDU.
MAX_RECEIPT_ROOMS = 100
MAX_RECEIPT_USERS = 500
MAIN_THREAD = "main"

EdusHandler = Callable[[str, list[Any]], Awaitable[None]]


def combine_edu_handlers(*handlers: EdusHandler) -> EdusHandler:
    """One ``edu_handler`` for the transaction handler, passing every EDU list to each of
    ``handlers`` in turn (each skips the types it does not know)."""

    async def handle(origin: str, edus: list[Any]) -> None:
        for handler in handlers:
            await handler(origin, edus)

    return handle


class EphemeralEdus:
    def __init__(
        self,
        *,
        store: Store,
        typing: TypingService,
        presence: PresenceService,
        notifier: Notifier,
        clock: WallClock,
    ) -> None:
        self.store = store
        self.typing = typing
        self.presence = presence
        self.notifier = notifier
        self.clock = clock

    async def on_edus(self, origin: str, edus: list[Any]) -> None:
        for edu in edus:
            edu_type = edu.get("edu_type") if isinstance(edu, dict) else None
            if edu_type not in (TYPING_EDU, RECEIPT_EDU, PRESENCE_EDU):
                continue
            content = edu.get("content")
            if not isinstance(content, dict):
                logger.info("dropping %s from %s: content is not an object", edu_type, origin)
                continue
            try:
                if edu_type == TYPING_EDU:
                    reason = await self._typing(origin, content)
                    dropped = [] if reason is None else [reason]
                elif edu_type == RECEIPT_EDU:
                    dropped = await self.on_receipts(origin, content)
                else:
                    dropped = await self.presence.on_edu(origin, content)
            except DatabaseUnavailable:
                raise
            except Exception:
                logger.exception("failed to handle %s from %s", edu_type, origin)
                continue
            for reason in dropped:
                logger.info("dropping %s from %s: %s", edu_type, origin, reason)

    async def _typing(self, origin: str, content: dict[str, Any]) -> str | None:
        room_id = content.get("room_id")
        if isinstance(room_id, str) and not await self._acl_allows(room_id, origin):
            return f"{origin} is banned from {room_id} by its server ACL"
        return await self.typing.on_edu(origin, content)

    async def on_receipts(self, origin: str, content: dict[str, Any]) -> list[str]:
        """The receipts of an ``m.receipt`` EDU; the reasons some were dropped."""
        dropped: list[str] = []
        stored: set[str] = set()
        now = self.clock()
        for room_id, by_type in list(content.items())[:MAX_RECEIPT_ROOMS]:
            if not isinstance(room_id, str) or room_id_error(room_id):
                dropped.append("a key is not a room ID")
                continue
            if not isinstance(by_type, dict):
                dropped.append(f"the receipts of {room_id} are not an object")
                continue
            if not await self._acl_allows(room_id, origin):
                dropped.append(f"{origin} is banned from {room_id} by its server ACL")
                continue
            for receipt_type, by_user in by_type.items():
                if receipt_type not in FEDERATED_RECEIPT_TYPES or not isinstance(by_user, dict):
                    dropped.append(f"{receipt_type!r} receipts are not accepted")
                    continue
                for user_id, value in list(by_user.items())[:MAX_RECEIPT_USERS]:
                    receipt = self._receipt(origin, room_id, receipt_type, user_id, value, now)
                    if isinstance(receipt, str):
                        dropped.append(receipt)
                    elif not await self._is_joined(room_id, receipt.user_id):
                        dropped.append(f"{receipt.user_id} is not joined to {room_id}")
                    else:
                        await self.store.receipts.upsert_receipt(receipt)
                        stored.add(room_id)
        if stored:
            self.notifier.notify(room_ids=stored)
        return dropped

    @staticmethod
    def _receipt(
        origin: str, room_id: str, receipt_type: str, user_id: Any, value: Any, now: int
    ) -> Receipt | str:
        """The receipt a user's entry describes, or why it is refused."""
        if not isinstance(user_id, str) or user_id_error(user_id, historical=True):
            return "a receipt's user is not a user ID"
        if domain_of(user_id) != origin:
            return f"{user_id} is not a user of {origin}"
        if not isinstance(value, dict):
            return f"the receipt of {user_id} is not an object"
        event_ids = value.get("event_ids")
        if (
            not isinstance(event_ids, list)
            or not event_ids
            or not isinstance(event_ids[0], str)
            or event_id_error(event_ids[0])
        ):
            return f"the receipt of {user_id} names no event"
        data = value.get("data")
        data = data if isinstance(data, dict) else {}
        ts = data.get("ts")
        if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts <= 2**62:
            ts = now
        thread_id = data.get("thread_id")
        if not isinstance(thread_id, str) or (
            thread_id != MAIN_THREAD and event_id_error(thread_id)
        ):
            thread_id = None
        return Receipt(room_id, receipt_type, user_id, thread_id, event_ids[0], ts)

    async def _is_joined(self, room_id: str, user_id: str) -> bool:
        member = await self.store.state.get_current_state_event(room_id, "m.room.member", user_id)
        return member is not None and member.membership == "join"

    async def _acl_allows(self, room_id: str, origin: str) -> bool:
        acl = await self.store.state.get_current_state_event(room_id, ACL_EVENT_TYPE, "")
        return server_allowed_by_acl(None if acl is None else acl.content, origin)
