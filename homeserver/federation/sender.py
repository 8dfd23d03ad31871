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

Several processes over one database (given a :class:`LeaseKeeper`): each destination is owned by
one live instance, chosen by rendezvous hashing of its name over the live instances' heartbeat
list (:func:`owner_of`), and delivered only under the destination's lease (``federation:<name>``),
so a handover never has two processes sending. The owner finds work queued by the other
processes by looking at the outbox every ``poll_interval`` (and at once when told through
:meth:`FederationSender.wake`, the hook a cross-process notification calls). When a process
stops renewing, it drops out of the live list and its leases expire (at once on PostgreSQL when
its process is gone: ``LeaseKeeper``): the destinations it owned hash to the others, which take
them over, resending an unfinished transaction with its stored
ID and content (the peer dedupes it by ID). A transaction is assigned to entries only while
none of them is in one (:meth:`OutboxStore.assign_transaction`), so two processes can never
send the same entries under two IDs.
"""

from __future__ import annotations

import asyncio
import hashlib
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
from homeserver.streams.leases import LeaseKeeper
from homeserver.streams.waiting import wait_event

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


#: How often the owner of destinations looks for entries other processes queued.
DEFAULT_POLL_INTERVAL_SECONDS = 1.0
LEASE_PREFIX = "federation:"


def owner_of(destination: str, instances: Iterable[str]) -> str | None:
    """The instance that delivers to ``destination``: rendezvous (highest random weight)
    hashing, so an instance joining or leaving moves only the destinations it wins or had."""
    best: tuple[bytes, str] | None = None
    for instance in instances:
        weight = hashlib.blake2b(f"{instance}\n{destination}".encode(), digest_size=8).digest()
        if best is None or (weight, instance) > best:
            best = (weight, instance)
    return None if best is None else best[1]


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
        leases: LeaseKeeper | None = None,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_SECONDS,
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
        #: None: this process alone delivers (no leases, no polling).
        self.leases = leases
        self.poll_interval_s = poll_interval_s
        self._poller: asyncio.Task[None] | None = None
        #: destinations whose lease this process keeps while idle, and since when (ms).
        self._idle_since: dict[str, int] = {}

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Listen for new entries and resume every destination with queued ones."""
        if self._running:
            return
        self._running = True
        self.store.outbox.add_listener(self.wake)
        if self.leases is not None:
            await self.leases.refresh_live_instances()
            self._poller = asyncio.create_task(self._poll_forever(), name="federation poll")
        self.wake(await self.store.outbox.destinations_with_entries())

    async def stop(self) -> None:
        """Cancel every destination's task; what they were sending stays queued (and their
        leases are given up with the keeper's)."""
        self._running = False
        self.store.outbox.remove_listener(self.wake)
        poller, self._poller = self._poller, None
        tasks = [q.task for q in self._queues.values() if q.task is not None]
        if poller is not None:
            tasks.append(poller)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._queues.clear()
        self._idle_since.clear()

    # --- sharing the destinations among processes ---------------------------------------------
    def owns(self, destination: str) -> bool:
        """Whether this process delivers to ``destination`` (always, without leases)."""
        if self.leases is None:
            return True
        return owner_of(destination, self.leases.live_instances()) == self.leases.instance_name

    @staticmethod
    def lease_name(destination: str) -> str:
        return LEASE_PREFIX + destination

    async def poll(self) -> None:
        """One look at the outbox: wake the destinations this process owns that have entries
        (queued by any process), and give up the leases of idle destinations and of those
        another process owns now."""
        assert self.leases is not None
        await self.leases.refresh_live_instances()
        queued = await self.store.outbox.destinations_with_entries()
        self.wake(queued)
        for destination, queue in list(self._queues.items()):
            # Waiting out a backoff (maybe for hours) for a destination now another's: stop,
            # so its lease is given up below and the new owner can take it.
            if queue.waiting_until is not None and queue.task and not self.owns(destination):
                queue.task.cancel()
        now = self.leases.clock()
        for destination, since in list(self._idle_since.items()):
            if destination in self._queues:
                continue
            if not self.owns(destination) or now - since > self.leases.timeout_ms:
                del self._idle_since[destination]
                await self.leases.release(self.lease_name(destination))

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                logger.warning("federation sender: looking at the outbox failed: %s", e)

    # --- signals ----------------------------------------------------------------------------
    def wake(self, destinations: Iterable[str] = ()) -> None:
        """New entries for ``destinations`` were committed: make sure each has a task (a
        destination in backoff keeps waiting for its time)."""
        if not self._running:
            return
        for destination in destinations:
            if destination == self.server_name or not self.owns(destination):
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
        lease = self.lease_name(destination)
        try:
            if self.leases is not None and not await self.leases.try_acquire(lease):
                return  # its previous owner still holds it: the next poll tries again
            self._idle_since.pop(destination, None)
            while self._running:
                if self.leases is not None and (
                    not self.leases.holds(lease) or not self.owns(destination)
                ):
                    return  # handed over: the new owner resends what is in flight
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
            if self._running and not self.owns(destination):
                return  # handed over by poll() while waiting out a backoff
            raise
        except Exception:
            # A bug or a database outage: leave the entries queued for the next wake/start.
            logger.exception("federation sender for %s failed", destination)
        finally:
            if self._queues.get(destination) is queue:
                del self._queues[destination]
            if self.leases is not None and self.leases.holds(lease):
                # Kept a while for the next burst; poll() gives it up when idle or not ours.
                self._idle_since[destination] = self.leases.clock()

    @staticmethod
    async def _wait_reachable(queue: _Queue, seconds: float) -> None:
        await wait_event(queue.reachable, seconds)

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
            if not await self.store.outbox.assign_transaction(
                [e.id for e in batch], txn_id, txn_ts
            ):
                # Another process put some of these entries in a transaction meanwhile (it
                # owned the destination until now): send that one, as it is stored.
                entries = await self.store.outbox.head(
                    destination, MAX_PDUS_PER_TRANSACTION + MAX_EDUS_PER_TRANSACTION
                )
                batch = next_batch(entries)
                if not batch or batch[0].txn_id is None:
                    return
                await self._send_transaction(destination, batch)
                return
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
