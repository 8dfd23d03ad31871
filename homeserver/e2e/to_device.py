"""Sending to-device messages (PUT /sendToDevice/{eventType}/{txnId}).

A request names recipients as ``{user_id: {device_id | "*": content}}``. Local recipients get
one inbox row per existing device (``"*"``: every device; a message for a specific device wins
over ``"*"`` for that device; unknown users and devices are skipped, as Synapse does). Remote
recipients are grouped by server into ``m.direct_to_device`` EDUs queued in the federation
outbox. The transaction ID, the inbox rows and the EDUs are committed together, so a retried
request (same sending device, same txnId) delivers nothing twice, and a crash delivers all or
nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from homeserver.clock import WallClock
from homeserver.crypto.canonical_json import encode_canonical_json
from homeserver.errors import BadRequest, Codes, MatrixError
from homeserver.events.ids import random_opaque
from homeserver.ratelimit import TokenBucketLimiter
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.storage.device_inbox_recipients import get_devices_of_users_txn
from homeserver.streams.notifier import Notifier
from homeserver.types import domain_of, user_id_error

#: A message's content, as canonical JSON, may be at most this long: it has to fit in one EDU
#: over federation (Synapse's limit too).
MAX_MESSAGE_BYTES = 65536
#: EDUs are filled up to about this size before another is started (several messages to one
#: server may not fit one federation request comfortably).
SOFT_MAX_EDU_BYTES = 65536
ALL_DEVICES = "*"
#: Longest transaction ID (as for room events): PostgreSQL cannot index a key of kilobytes.
MAX_TXN_ID_LENGTH = 255
DIRECT_TO_DEVICE_EDU = "m.direct_to_device"

#: recipient user → device ID (or "*") → message content
Messages = dict[str, dict[str, dict[str, Any]]]


class MessageTooLarge(MatrixError):
    def __init__(self, message: str) -> None:
        super().__init__(413, Codes.TOO_LARGE, message)


def parse_messages(body: Mapping[str, Any]) -> Messages:
    """The ``messages`` of a request body, checked: 400 for a wrong shape or an invalid user
    ID, 413 for a message too large to send."""
    messages = body.get("messages")
    if messages is None:
        raise BadRequest("Missing 'messages'", Codes.MISSING_PARAM)
    if not isinstance(messages, dict):
        raise BadRequest("'messages' must be an object", Codes.BAD_JSON)
    parsed: Messages = {}
    for user_id, by_device in messages.items():
        problem = user_id_error(user_id, historical=True)
        if problem is not None:
            raise BadRequest(f"Invalid user ID in 'messages': {problem}", Codes.INVALID_PARAM)
        if not isinstance(by_device, dict):
            raise BadRequest(f"'messages.{user_id}' must be an object", Codes.BAD_JSON)
        for device_id, content in by_device.items():
            if not device_id:
                raise BadRequest("Device IDs must not be empty", Codes.INVALID_PARAM)
            if not isinstance(content, dict):
                raise BadRequest(
                    f"The message for {user_id} {device_id} must be an object", Codes.BAD_JSON
                )
            size = len(encode_canonical_json(content))
            if size > MAX_MESSAGE_BYTES:
                raise MessageTooLarge(
                    f"The message for {user_id} {device_id} is too large"
                    f" ({size} > {MAX_MESSAGE_BYTES} bytes)"
                )
        if by_device:
            parsed[user_id] = by_device
    return parsed


@dataclass(frozen=True, slots=True)
class ToDeviceSend:
    sender: str
    #: the sending device (None for an access token without one).
    sender_device: str | None
    event_type: str
    txn_id: str
    messages: Messages


class ToDeviceService:
    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        server_name: str,
        clock: WallClock,
        *,
        limiter: TokenBucketLimiter | None = None,
    ) -> None:
        #: ``rc_to_device``: requests per sending device.
        self.limiter = limiter
        self.store = store
        self.notifier = notifier
        self.server_name = server_name
        self.clock = clock

    async def send(self, request: ToDeviceSend) -> None:
        if self.limiter is not None and not self.limiter.is_exempt(request.sender):
            await self.limiter.check(f"{request.sender}|{request.sender_device or ''}")
        if not request.event_type:
            raise BadRequest("The event type must not be empty", Codes.INVALID_PARAM)
        if len(request.txn_id) > MAX_TXN_ID_LENGTH:
            raise BadRequest("The transaction ID is too long", Codes.INVALID_PARAM)
        local: Messages = {}
        remote: dict[str, Messages] = {}
        for user_id, by_device in request.messages.items():
            server = domain_of(user_id)
            if server == self.server_name:
                local[user_id] = by_device
            else:
                remote.setdefault(server, {})[user_id] = by_device
        recipients = await self.store.db.run_in_transaction(
            "send_to_device", self._send_txn, request, local, remote
        )
        if recipients:
            self.notifier.notify(user_ids=recipients)

    async def _send_txn(
        self,
        txn: Transaction,
        request: ToDeviceSend,
        local: Messages,
        remote: dict[str, Messages],
    ) -> set[str]:
        """Deliver in ``txn``; the local users who got a message (to wake their syncs)."""
        now = self.clock()
        first_time = await self.store.device_inbox.record_txn_id_txn(
            txn, request.sender, request.sender_device or "", request.txn_id, now
        )
        if not first_time:
            return set()
        deliveries: list[tuple[str, str, dict[str, Any]]] = []
        existing = await get_devices_of_users_txn(txn, local)
        for user_id, by_device in local.items():
            for device_id in sorted(existing.get(user_id, ())):
                content = by_device.get(device_id, by_device.get(ALL_DEVICES))
                if content is not None:
                    message = {"type": request.event_type, "sender": request.sender}
                    deliveries.append((user_id, device_id, {**message, "content": content}))
        if deliveries:
            await self.store.device_inbox.add_messages_txn(txn, deliveries)
        for server, messages in sorted(remote.items()):
            for content in _edus(request.sender, request.event_type, messages):
                payload = {"kind": "edu", "edu_type": DIRECT_TO_DEVICE_EDU, "content": content}
                await self.store.outbox.enqueue_txn(txn, server, payload, now=now)
        return {user_id for user_id, _, _ in deliveries}


def _edus(sender: str, event_type: str, messages: Messages) -> Iterator[dict[str, Any]]:
    """``m.direct_to_device`` contents carrying ``messages``, each about SOFT_MAX_EDU_BYTES at
    most (one message bigger than that alone in its EDU), each with its own message_id (the
    receiver's deduplication key)."""
    batch: Messages = {}
    size = 0
    for user_id, by_device in sorted(messages.items()):
        for device_id, content in sorted(by_device.items()):
            # Roughly what the entry adds to the EDU's JSON.
            entry = len(encode_canonical_json(content)) + len(user_id) + len(device_id) + 16
            if batch and size + entry > SOFT_MAX_EDU_BYTES:
                yield _edu(sender, event_type, batch)
                batch, size = {}, 0
            batch.setdefault(user_id, {})[device_id] = content
            size += entry
    if batch:
        yield _edu(sender, event_type, batch)


def _edu(sender: str, event_type: str, messages: Messages) -> dict[str, Any]:
    return {
        "sender": sender,
        "type": event_type,
        "message_id": random_opaque(24),
        "messages": messages,
    }
