"""The federation sender: delivers the durable outbox to other servers (DESIGN.md §4).

One asyncio task per destination with queued work, so there is never more than one transaction
in flight to a destination (spec: "Transactions"). A task takes the destination's oldest entries:
an invite goes alone through ``v2/invite``; PDUs and EDUs go in a transaction of at most 50 PDUs
and 100 EDUs, in queue order, ``PUT /_matrix/federation/v1/send/{txnId}``. The transaction's ID
and timestamp are written onto its entries before the first attempt, so it is retried with the
same ID and content until the destination answers 200 — after a restart too. Then the entries
are deleted.

A failure to reach the destination (or a 5xx, 429, 401, 408) puts it in backoff
(``retry.py``), kept in ``federation_destinations`` so a restart honours it; its entries wait.
Any other 4xx for a whole transaction is final: it is logged and its entries dropped, so that a
peer refusing them cannot block its queue for ever. A destination in backoff is retried at once
when it shows signs of life (:meth:`FederationSender.on_destination_reachable`).

:meth:`FederationSender.start` resumes every destination with queued entries (catch-up after a
restart or an outage); writers' commits wake destinations through the outbox store's listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from homeserver.clock import WallClock
from homeserver.config.federation import FederationConfig
from homeserver.events.builder import Signer
from homeserver.federation.client import (
    FederationClient,
    FederationHttpError,
    FederationUnreachable,
    fed_path,
)
from homeserver.federation.outbound_invite import (
    InviteOutcome,
    InviteResult,
    Verifier,
    send_invite,
)
from homeserver.federation.retry import (
    Jitter,
    after_failure,
    healthy,
    is_backing_off,
    synapse_jitter,
)
from homeserver.metrics import HomeserverMetrics
from homeserver.storage import Store
from homeserver.storage.outbox import OutboxEntry, RetryState

logger = logging.getLogger(__name__)

MAX_PDUS_PER_TRANSACTION = 50
MAX_EDUS_PER_TRANSACTION = 100
SEND_PATH = "/_matrix/federation/v1/send/{}"

#: Statuses for a whole transaction that say "not now" rather than "never" (Synapse backs off
#: on these too: 401 is typically a peer that cannot fetch our keys yet).
RETRYABLE_STATUSES = frozenset({401, 408, 429})


def is_retryable(error: Exception) -> bool:
    if isinstance(error, FederationHttpError):
        return error.status >= 500 or error.status in RETRYABLE_STATUSES
    return isinstance(error, FederationUnreachable)


def next_batch(entries: list[OutboxEntry]) -> list[OutboxEntry]:
    """The entries of the next transaction from the head of a queue: those already put in a
    transaction (resent as they were), else consecutive PDUs and EDUs up to the limits, stopping
    at an invite (sent on its own, in its turn)."""
    if not entries:
        return []
    head = entries[0]
    if head.txn_id is not None:
        return [e for e in entries if e.txn_id == head.txn_id]
    batch: list[OutboxEntry] = []
    counts = {"pdu": 0, "edu": 0}
    limits = {"pdu": MAX_PDUS_PER_TRANSACTION, "edu": MAX_EDUS_PER_TRANSACTION}
    for entry in entries:
        kind = entry.kind
        if entry.txn_id is not None or kind not in counts or counts[kind] == limits[kind]:
            break
        counts[kind] += 1
        batch.append(entry)
    return batch


@dataclass(slots=True)
class _Queue:
    """The running task of one destination and its signals."""

    task: asyncio.Task[None] | None = None
    #: new entries were queued while the task was busy: look again before exiting.
    woken: bool = False
    #: the destination showed signs of life: cut a backoff wait short.
    reachable: asyncio.Event = field(default_factory=asyncio.Event)
    #: while waiting out a backoff: when the wait ends (ms).
    waiting_until: int | None = None


class FederationSender:
    def __init__(
        self,
        store: Store,
        client: FederationClient,
        config: FederationConfig,
        clock: WallClock,
        server_name: str,
        signer: Signer,
        *,
        keyring: Verifier | None = None,
        metrics: HomeserverMetrics | None = None,
        jitter: Jitter = synapse_jitter,
    ) -> None:
        self.store = store
        self.client = client
        self.config = config
        self.clock = clock
        self.server_name = server_name
        self.signer = signer
        self.keyring = keyring
        self.jitter = jitter
        self._queues: dict[str, _Queue] = {}
        self._running = False
        self.metrics = metrics or HomeserverMetrics(server_name)

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Listen for new entries and resume every destination with queued ones."""
        if self._running:
            return
        self._running = True
        self.store.outbox.add_listener(self.wake)
        self.wake(await self.store.outbox.destinations_with_entries())

    async def stop(self) -> None:
        """Cancel every destination's task; what they were sending stays queued."""
        self._running = False
        self.store.outbox.remove_listener(self.wake)
        tasks = [q.task for q in self._queues.values() if q.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._queues.clear()

    # --- signals ----------------------------------------------------------------------------
    def wake(self, destinations: Iterable[str] = ()) -> None:
        """New entries for ``destinations`` were committed: make sure each has a task (a
        destination in backoff keeps waiting for its time)."""
        if not self._running:
            return
        for destination in destinations:
            if destination == self.server_name:
                continue
            queue = self._queues.get(destination)
            if queue is None:
                queue = self._queues[destination] = _Queue()
                queue.task = asyncio.create_task(
                    self._run(destination, queue), name=f"federation-sender {destination}"
                )
            else:
                queue.woken = True

    def waiting_until(self, destination: str) -> int | None:
        """When ``destination``'s backoff ends, while its task is waiting for that."""
        queue = self._queues.get(destination)
        return None if queue is None else queue.waiting_until

    def on_destination_reachable(self, server_name: str) -> None:
        """``server_name`` just reached us (an authenticated inbound request): if it is in
        backoff, retry it now rather than at the end of its wait (as Synapse does)."""
        queue = self._queues.get(server_name)
        if queue is not None:
            queue.reachable.set()

    # --- one destination ----------------------------------------------------------------------
    async def _run(self, destination: str, queue: _Queue) -> None:
        try:
            while self._running:
                queue.woken = False
                state = await self.store.outbox.get_retry_state(destination)
                if is_backing_off(state) and not queue.reachable.is_set():
                    assert state is not None
                    wait_ms = state.next_attempt_ts - self.clock()
                    if wait_ms > 0:
                        queue.waiting_until = state.next_attempt_ts
                        await self._wait_reachable(queue, wait_ms / 1000)
                        queue.waiting_until = None
                        continue
                if queue.reachable.is_set():
                    queue.reachable.clear()
                    state = await self._mark_reachable(destination, state)
                if not await self.send_next(destination, state) and not queue.woken:
                    return  # nothing queued (and nothing new arrived meanwhile)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug or a database outage: leave the entries queued for the next wake/start.
            logger.exception("federation sender for %s failed", destination)
        finally:
            if self._queues.get(destination) is queue:
                del self._queues[destination]

    @staticmethod
    async def _wait_reachable(queue: _Queue, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(queue.reachable.wait(), timeout=seconds)

    async def _mark_reachable(self, destination: str, state: RetryState | None) -> RetryState:
        fresh = healthy(destination)
        if state is not None and state != fresh:
            await self.store.outbox.set_retry_state(fresh)
        return fresh

    async def send_next(self, destination: str, state: RetryState | None = None) -> bool:
        """Attempt the next transaction or invite of ``destination`` once, regardless of its
        backoff. False when nothing is queued. Failures update the backoff; they do not
        raise."""
        entries = await self.store.outbox.head(
            destination, MAX_PDUS_PER_TRANSACTION + MAX_EDUS_PER_TRANSACTION
        )
        if not entries:
            return False
        head = entries[0]
        try:
            if head.txn_id is None and head.kind == "invite":
                await self._send_invite(destination, head)
            elif head.txn_id is None and head.kind not in ("pdu", "edu"):
                logger.warning("dropping outbox entry %d of unknown kind %r", head.id, head.kind)
                await self.store.outbox.delete([head.id])
            else:
                await self._send_transaction(destination, next_batch(entries))
        except Exception as e:
            if not is_retryable(e):
                raise
            await self._failed(destination, state, e)
            return True
        if is_backing_off(state):
            await self._mark_reachable(destination, state)
        return True

    async def _failed(self, destination: str, state: RetryState | None, error: Exception) -> None:
        if state is None:
            state = await self.store.outbox.get_retry_state(destination)
        new_state = after_failure(state, destination, self.clock(), self.config, self.jitter)
        await self.store.outbox.set_retry_state(new_state)
        logger.info(
            "cannot reach %s (%s); next attempt in %d ms",
            destination,
            error,
            new_state.retry_interval_ms,
        )

    # --- transactions -------------------------------------------------------------------------
    async def _send_transaction(self, destination: str, batch: list[OutboxEntry]) -> None:
        head = batch[0]
        if head.txn_id is None:
            # Unique: each entry is in one transaction only, and IDs are never reused.
            txn_ts = self.clock()
            txn_id = f"{txn_ts}.{head.id}"
            await self.store.outbox.assign_transaction([e.id for e in batch], txn_id, txn_ts)
        else:
            txn_id, txn_ts = head.txn_id, head.txn_ts or self.clock()
        body = await self._transaction_body(batch, txn_ts)
        ids = [e.id for e in batch]
        if not body["pdus"] and not body["edus"]:
            await self.store.outbox.delete(ids)  # only events that are gone: nothing to send
            return
        try:
            answer = await self.client.put_json(
                destination,
                fed_path(SEND_PATH, txn_id),
                body,
                timeout=self.config.client_timeout_ms / 1000,
            )
        except FederationHttpError as e:
            if is_retryable(e):
                self.metrics.transaction_sent(destination, "failed")
                raise
            # The destination refuses this transaction for good: retrying cannot help.
            logger.warning(
                "%s refused transaction %s (%d PDUs, %d EDUs): %s; dropping it",
                destination,
                txn_id,
                len(body["pdus"]),
                len(body["edus"]),
                e,
            )
            self.metrics.transaction_sent(destination, "refused")
            await self.store.outbox.delete(ids)
            return
        except FederationUnreachable:
            self.metrics.transaction_sent(destination, "failed")
            raise
        self._log_pdu_errors(destination, txn_id, answer)
        self.metrics.transaction_sent(destination, "sent")
        await self.store.outbox.delete(ids)

    async def _transaction_body(self, batch: list[OutboxEntry], txn_ts: int) -> dict[str, Any]:
        entries = [e.payload for e in batch if e.kind == "pdu"]
        event_ids = [p.get("event_id") for p in entries]
        events = await self.store.events.get_events([i for i in event_ids if isinstance(i, str)])
        pdus = []
        for payload, event_id in zip(entries, event_ids, strict=True):
            event = events.get(event_id) if isinstance(event_id, str) else None
            if event is not None:
                pdus.append(event.federation_json())
            elif isinstance(payload.get("pdu"), dict):
                pdus.append(payload["pdu"])  # its room was purged: the entry carries the PDU
            else:
                logger.warning("outbox PDU %s is not in the events table; skipped", event_id)
        edus = [
            {"edu_type": e.payload.get("edu_type"), "content": e.payload.get("content", {})}
            for e in batch
            if e.kind == "edu"
        ]
        return {
            "origin": self.server_name,
            "origin_server_ts": txn_ts,
            "pdus": pdus,
            "edus": edus,
        }

    @staticmethod
    def _log_pdu_errors(destination: str, txn_id: str, answer: Any) -> None:
        results = answer.get("pdus") if isinstance(answer, dict) else None
        if not isinstance(results, dict):
            return
        for event_id, result in results.items():
            if isinstance(result, dict) and result.get("error"):
                logger.info(
                    "%s rejected %s in transaction %s: %s",
                    destination,
                    event_id,
                    txn_id,
                    result["error"],
                )

    # --- invites ------------------------------------------------------------------------------
    async def _send_invite(self, destination: str, entry: OutboxEntry) -> None:
        event_id = entry.payload.get("event_id")
        invite = await self.store.events.get_event(event_id) if isinstance(event_id, str) else None
        if invite is None:
            logger.warning("outbox invite %s is not in the events table; dropped", event_id)
            await self.store.outbox.delete([entry.id])
            return
        try:
            result = await send_invite(
                self.client,
                self.store,
                self.keyring,
                destination,
                invite,
                timeout=self.config.client_timeout_ms / 1000,
            )
        except FederationHttpError as e:
            if is_retryable(e):
                self.metrics.federation_invites.labels("failed").inc()
                raise
            result = InviteResult(InviteOutcome.REFUSED, str(e))
        except FederationUnreachable:
            self.metrics.federation_invites.labels("failed").inc()
            raise
        if result.outcome is InviteOutcome.REFUSED:
            logger.warning(
                "invite %s to %s not delivered: %s", event_id, destination, result.reason
            )
        self.metrics.federation_invites.labels(result.outcome.value).inc()
        await self.store.outbox.delete([entry.id])
