"""Receiving a transaction: ``PUT /_matrix/federation/v1/send/{txnId}`` (spec: server-server API
"Transactions"; §4 of federation-minimum.md).

The body is checked as a whole (``origin`` = the authenticated origin, ≤ 50 PDUs, ≤ 100 EDUs),
then each PDU on its own: its room must be one we know and whose server ACL admits the origin,
then :mod:`received` checks and persists it. PDUs are handled in the order given, one room at a
time, and each gets an entry in the answer — ``{}`` or ``{"error": …}``; a rejected PDU never
fails the transaction. The answer is stored, so a retry of the same ``(origin, txnId)`` (after a
lost response, or a restart) gets the same answer without the PDUs being handled again.

EDUs are handed, after the PDUs, to ``edu_handler`` (given by the wiring: the end-to-end
encryption EDUs, :mod:`e2e_edus`); it skips what it does not know (typing, receipts, presence)
and never fails the transaction for one bad EDU.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, Forbidden
from homeserver.events.event import Event
from homeserver.events.ids import compute_event_id
from homeserver.federation.acl import ACL_EVENT_TYPE, server_allowed_by_acl
from homeserver.federation.pdu_checks import PduRejected, UnknownRoom
from homeserver.federation.received import ReceivedEvents
from homeserver.metrics import HomeserverMetrics
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.storage import Store
from homeserver.storage.errors import DatabaseUnavailable

logger = logging.getLogger(__name__)

MAX_PDUS = 50
MAX_EDUS = 100
#: how long answers to received transactions are kept for retries.
TRANSACTION_RETENTION_MS = 24 * 60 * 60 * 1000

#: Versions whose event IDs are URL-safe reference hashes (v4+): used to name a PDU of a room
#: we do not know in the answer, as its sender would have computed its ID (v4+ rooms).
_FALLBACK_ID_VERSION = KNOWN_ROOM_VERSIONS["10"]


def _pdu_key(pdu: Any, room_version: RoomVersion | None = None) -> str | None:
    """The event ID the sender computed for ``pdu``, to name it in the answer even when it fails
    our checks: by its room's event-ID format (v1/v2: its ``event_id`` field; v3+: its
    reference hash, whatever ``event_id`` it may claim). For a room we do not know, a guess:
    the ``event_id`` field, else a v4+ reference hash. None if no ID can be computed."""
    if not isinstance(pdu, dict):
        return None
    if room_version is None:
        if isinstance(pdu.get("event_id"), str):
            return pdu["event_id"]
        room_version = _FALLBACK_ID_VERSION
    try:
        return compute_event_id(room_version, pdu)
    except (ValueError, TypeError):
        return None


class TransactionHandler:
    def __init__(
        self,
        store: Store,
        received: ReceivedEvents,
        clock: WallClock,
        metrics: HomeserverMetrics | None = None,
        edu_handler: Callable[[str, list[Any]], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.received = received
        self.clock = clock
        self.metrics = metrics
        #: the transaction's EDUs go here after its PDUs: ``(origin, edus)``.
        self.edu_handler = edu_handler
        #: transactions being handled, so a retry arriving meanwhile waits for the same answer.
        self._in_flight: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self._last_prune_ms = 0

    async def on_send(self, origin: str, txn_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """The answer to ``PUT /send/{txn_id}`` from the authenticated ``origin``."""
        pdus, edus = self._validate(origin, body)
        key = (origin, txn_id)
        in_flight = self._in_flight.get(key)
        if in_flight is not None:
            return await asyncio.shield(in_flight)
        stored = await self.store.federation_inbound.get_transaction_response(origin, txn_id)
        if stored is not None:
            return stored
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        if self.metrics is not None:  # counted once per transaction, not per retry
            self.metrics.transaction_received(len(pdus), len(edus))
        try:
            response = {"pdus": await self._handle_pdus(origin, pdus)}
            if edus and self.edu_handler is not None:
                await self.edu_handler(origin, edus)
            now = self.clock()
            await self.store.federation_inbound.store_transaction_response(
                origin, txn_id, response, now
            )
            await self._maybe_prune(now)
            future.set_result(response)
            return response
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved: no "never retrieved" warning if nobody waits
            raise
        finally:
            del self._in_flight[key]

    @staticmethod
    def _validate(origin: str, body: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        body_origin = body.get("origin")
        if not isinstance(body_origin, str):
            raise BadRequest("'origin' is missing or not a string", Codes.MISSING_PARAM)
        if body_origin != origin:
            raise Forbidden("The transaction's origin is not the authenticated server")
        if not isinstance(body.get("origin_server_ts"), int):
            raise BadRequest("'origin_server_ts' is missing or not an integer", Codes.BAD_JSON)
        pdus = body.get("pdus")
        if not isinstance(pdus, list):
            raise BadRequest("'pdus' is missing or not a list", Codes.BAD_JSON)
        edus = body.get("edus", [])
        if not isinstance(edus, list):
            raise BadRequest("'edus' is not a list", Codes.BAD_JSON)
        if len(pdus) > MAX_PDUS or len(edus) > MAX_EDUS:
            raise BadRequest(
                f"A transaction holds at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs",
                Codes.TOO_LARGE,
            )
        return pdus, edus

    async def _handle_pdus(self, origin: str, pdus: list[Any]) -> dict[str, dict[str, str]]:
        """Each PDU checked on its own, then each room's PDUs received together, in order
        (PDUs of different rooms do not depend on each other)."""
        results: dict[str, dict[str, str]] = {}
        by_room: dict[str, list[Event]] = {}
        for pdu in pdus:
            event_id, outcome = await self._check_pdu(origin, pdu)
            if isinstance(outcome, Event):
                by_room.setdefault(outcome.room_id, []).append(outcome)
            elif event_id is not None:
                results[event_id] = {"error": outcome}
        for room_id, events in by_room.items():
            errors = await self._receive_room(origin, room_id, events)
            for event in events:
                error = errors.get(event.event_id)
                results[event.event_id] = {} if error is None else {"error": error}
        return results

    async def _check_pdu(self, origin: str, pdu: Any) -> tuple[str | None, Event | str]:
        """The PDU as a checked event of a room we know, or the reason it was dropped."""
        room_id = pdu.get("room_id") if isinstance(pdu, dict) else None
        if not isinstance(room_id, str):
            return _pdu_key(pdu), "PDU has no room_id"
        try:
            room_version = await self.received.room_version_of(room_id)
        except UnknownRoom as e:
            return _pdu_key(pdu), e.reason
        try:
            event = await self.received.check_pdu(room_version, pdu, origin=origin)
        except PduRejected as e:
            return _pdu_key(pdu, room_version), e.reason
        if event.room_id != room_id:
            return event.event_id, "PDU room_id does not match"
        return event.event_id, event

    async def _receive_room(
        self, origin: str, room_id: str, events: list[Event]
    ) -> dict[str, str | None]:
        acl = await self.store.state.get_current_state_event(room_id, ACL_EVENT_TYPE, "")
        if not server_allowed_by_acl(None if acl is None else acl.content, origin):
            return {e.event_id: "Server is banned from the room by its server ACL" for e in events}
        try:
            return await self.received.on_receive_pdus(origin, events)
        except DatabaseUnavailable:
            raise  # 503: the sender retries the whole transaction later; nothing is lost
        except Exception:
            # One room's PDUs must never fail the whole transaction (the sender would retry
            # it forever); whatever was stored before the failure stays stored.
            logger.exception(
                "failed to process %d PDUs of %s from %s", len(events), room_id, origin
            )
            return {e.event_id: "Internal error processing the PDU" for e in events}

    async def _maybe_prune(self, now: int) -> None:
        # At most once an hour: the answers only need to outlive the sender's retries.
        if now - self._last_prune_ms < 60 * 60 * 1000:
            return
        self._last_prune_ms = now
        await self.store.federation_inbound.prune_transactions(now - TRANSACTION_RETENTION_MS)
        # The IDs that keep resent to-device messages (and retried /sendToDevice requests)
        # from being delivered twice only need to outlive the retries, like the answers.
        await self.store.device_inbox.prune(now - TRANSACTION_RETENTION_MS)
