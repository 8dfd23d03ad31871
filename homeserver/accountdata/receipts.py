"""Receipts (``POST /rooms/{roomId}/receipt/...``) and read markers (``.../read_markers``).

``m.read`` and ``m.read.private`` are receipts (the private one is shown to its owner only, by
/sync); ``m.fully_read`` is the room account data the spec puts it in. The reader must be joined
to the room and the event must be one of the room's. A public receipt (``m.read``) is sent as
an ``m.receipt`` EDU to the room's other servers, queued in the receipt's own transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeserver.accountdata.service import FULLY_READ_TYPE, check_room_id
from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, Forbidden, NotFound
from homeserver.storage import Store
from homeserver.storage.receipts import Receipt
from homeserver.streams.edus import RECEIPT_EDU, enqueue_room_edu_txn
from homeserver.streams.notifier import Notifier
from homeserver.types import event_id_error

#: The ``thread_id`` of a receipt outside any thread (the others name a thread root event).
MAIN_THREAD = "main"

READ = "m.read"
READ_PRIVATE = "m.read.private"
RECEIPT_TYPES = (READ, READ_PRIVATE, FULLY_READ_TYPE)


class ReceiptsService:
    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        clock: WallClock,
        server_name: str,
        *,
        shadow_banned: Callable[[str], bool] = lambda _user_id: False,
    ) -> None:
        self.store = store
        #: a shadow-banned user's public receipts are accepted and dropped (rooms/shadow_ban.py).
        self._shadow_banned = shadow_banned
        self.notifier = notifier
        self.clock = clock
        self.server_name = server_name

    async def _check(self, user_id: str, room_id: str, event_id: str) -> None:
        check_room_id(room_id)
        if event_id_error(event_id):
            raise BadRequest(f"Invalid event ID: {event_id_error(event_id)}", Codes.INVALID_PARAM)
        member = await self.store.state.get_current_state_event(room_id, "m.room.member", user_id)
        if member is None or member.membership != "join":
            raise Forbidden(f"User {user_id} not in room {room_id}")
        event = await self.store.events.get_event(event_id)
        if event is None or event.room_id != room_id or event.internal.outlier:
            raise NotFound("Event not found")

    async def send_receipt(
        self, user_id: str, room_id: str, receipt_type: str, event_id: str, body: dict[str, Any]
    ) -> None:
        if receipt_type not in RECEIPT_TYPES:
            raise BadRequest(
                f"Receipt type must be {', '.join(RECEIPT_TYPES)}", Codes.INVALID_PARAM
            )
        thread_id = body.get("thread_id")
        if thread_id is not None:
            if not isinstance(thread_id, str) or not thread_id:
                raise BadRequest("thread_id field must be a non-empty string", Codes.INVALID_PARAM)
            if thread_id != MAIN_THREAD and event_id_error(thread_id):
                raise BadRequest(
                    "thread_id must be 'main' or the event ID of a thread root",
                    Codes.INVALID_PARAM,
                )
            if receipt_type == FULLY_READ_TYPE:
                raise BadRequest(
                    f"thread_id is not compatible with {FULLY_READ_TYPE} receipts.",
                    Codes.INVALID_PARAM,
                )
        await self._check(user_id, room_id, event_id)
        await self._apply(user_id, room_id, receipt_type, event_id, thread_id)

    async def set_read_markers(self, user_id: str, room_id: str, body: dict[str, Any]) -> None:
        markers: dict[str, str] = {}
        for receipt_type in RECEIPT_TYPES:
            value = body.get(receipt_type)
            if value is None:
                continue
            if not isinstance(value, str) or event_id_error(value):
                raise BadRequest(f"{receipt_type} must be an event ID", Codes.INVALID_PARAM)
            markers[receipt_type] = value
        check_room_id(room_id)
        for event_id in dict.fromkeys(markers.values()):
            await self._check(user_id, room_id, event_id)
        for receipt_type, event_id in markers.items():
            await self._apply(user_id, room_id, receipt_type, event_id, None)

    async def _apply(
        self, user_id: str, room_id: str, receipt_type: str, event_id: str, thread_id: str | None
    ) -> None:
        if receipt_type == FULLY_READ_TYPE:
            await self.store.account_data.set_account_data(
                user_id, room_id, FULLY_READ_TYPE, {"event_id": event_id}
            )
            self.notifier.notify(user_ids=[user_id])
            return
        if receipt_type == READ and self._shadow_banned(user_id):
            return
        receipt = Receipt(room_id, receipt_type, user_id, thread_id, event_id, self.clock())
        async with self.store.db.transaction("send_receipt") as txn:
            await self.store.receipts.upsert_receipt_txn(txn, receipt)
            if receipt_type == READ:
                await enqueue_room_edu_txn(
                    txn,
                    self.store,
                    room_id,
                    RECEIPT_EDU,
                    receipt_edu_content(receipt),
                    our_server=self.server_name,
                    now=receipt.ts,
                )
        self.notifier.notify(room_ids=[room_id])


def receipt_edu_content(receipt: Receipt) -> dict[str, Any]:
    """The ``m.receipt`` EDU's content for one receipt (spec: "Receipts")."""
    data: dict[str, Any] = {"ts": receipt.ts}
    if receipt.thread_id is not None:
        data["thread_id"] = receipt.thread_id
    return {
        receipt.room_id: {
            receipt.receipt_type: {receipt.user_id: {"event_ids": [receipt.event_id], "data": data}}
        }
    }
