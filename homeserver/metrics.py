"""Prometheus metrics of one homeserver, served at ``/_synapse/metrics``.

Each :class:`Homeserver` owns a :class:`HomeserverMetrics` with a ``CollectorRegistry`` of its
own (never prometheus_client's global one: tests run many servers in one process). Names are
Synapse's (``synapse_*``, see docs/metrics-howto.md in Synapse) wherever the concept exists, so
its Grafana dashboard and recording rules keep working; what Synapse lacks is ``homeserver_*``.
Like Synapse, every sample carries a ``server_name`` label: it is added when the registry is
rendered, so no call site can forget it.

What is measured where:

* HTTP requests, responses, latency, in-flight — :func:`homeserver.http.metrics.metrics_middleware`;
* database transactions by name — an observer on ``Database`` (count and duration histogram) and
  ``Database.stats`` read at scrape time (failures, retries, statements);
* events persisted and soft-failed — a listener on the ``EventPersister``, after commit;
* federation — the transaction handler (received PDUs/EDUs), the sender (transactions per
  destination and outcome) and the outbox read at scrape time (queue depth);
* room lifecycle — :func:`room_metrics_subscriber` on the domain-event bus.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from homeserver import __version__
from homeserver.rooms.bus import (
    ROOM_CREATE_RATE_LIMITED,
    ROOM_CREATED,
    ROOM_UPGRADE_FAILED,
    ROOM_UPGRADED,
    DomainEvent,
)

if TYPE_CHECKING:
    from homeserver.events.event import Event
    from homeserver.storage import Store
    from homeserver.storage.database import TransactionStats

logger = logging.getLogger(__name__)

# ``*_created`` series double the output for a timestamp nobody graphs (Synapse drops them too).
disable_created_metrics()

SERVER_NAME_LABEL = "server_name"
ROOM_OPERATIONS = "homeserver_room_operations_total"

#: Outcomes of ``homeserver_room_operations_total`` (label ``outcome``); the alert in
#: contrib/prometheus/alerts.yml divides the failing ones by all of them.
ROOM_CREATED_OUTCOME = "room_created"
ROOM_UPGRADED_OUTCOME = "room_upgraded"
ROOM_UPGRADE_FAILED_OUTCOME = "room_upgrade_failed"
RATE_LIMITED_OUTCOME = "rate_limited"

#: (operation, outcome) pairs of ``homeserver_room_operations_total``.
_ROOM_OPERATION_SERIES = (
    ("create", ROOM_CREATED_OUTCOME),
    ("create", RATE_LIMITED_OUTCOME),
    ("upgrade", ROOM_UPGRADED_OUTCOME),
    ("upgrade", ROOM_UPGRADE_FAILED_OUTCOME),
    ("upgrade", RATE_LIMITED_OUTCOME),
)

#: HTTP methods kept as label values; anything else (a client may send any token) is "other".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
#: Event types counted by name in ``..._persisted_events_sep``; others are ``*other*`` (as in
#: Synapse), since clients choose event types freely.
_TRACKED_EVENT_TYPES = frozenset(
    {
        "m.room.create",
        "m.room.member",
        "m.room.power_levels",
        "m.room.join_rules",
        "m.room.history_visibility",
        "m.room.guest_access",
        "m.room.name",
        "m.room.topic",
        "m.room.avatar",
        "m.room.canonical_alias",
        "m.room.encryption",
        "m.room.server_acl",
        "m.room.tombstone",
        "m.room.redaction",
        "m.room.message",
        "m.room.encrypted",
        "m.reaction",
    }
)
_DB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def http_method_label(method: str) -> str:
    return method if method in _METHODS else "other"


class HomeserverMetrics:
    """The metrics of one server. Call sites use the attributes and helpers below; the
    exposition (:meth:`render`) adds ``server_name`` to every sample."""

    def __init__(self, server_name: str) -> None:
        self.server_name = server_name
        self.registry = CollectorRegistry()
        self._store: Store | None = None
        r = self.registry
        # --- HTTP (Synapse: synapse/http/request_metrics.py) ------------------------------
        self.http_requests = Counter(
            "synapse_http_server_requests_received",
            "HTTP requests received, by method and route.",
            ("method", "servlet"),
            registry=r,
        )
        self.http_responses = Counter(
            "synapse_http_server_responses",
            "HTTP responses sent, by method and status code.",
            ("method", "code"),
            registry=r,
        )
        self.http_response_time = Histogram(
            "synapse_http_server_response_time_seconds",
            "Time to answer an HTTP request, by method, route and status code.",
            ("method", "servlet", "code"),
            registry=r,
        )
        self.http_in_flight = Gauge(
            "synapse_http_server_in_flight_requests_count",
            "HTTP requests being handled now, by method and route.",
            ("method", "servlet"),
            registry=r,
        )
        # --- storage -----------------------------------------------------------------------
        # Named so its _count and _sum are Synapse's counters of the same names (label desc).
        self.db_transaction_time = Histogram(
            "synapse_storage_transaction_time",
            "Database transactions by name (desc): count and duration in seconds.",
            ("desc",),
            buckets=_DB_BUCKETS,
            registry=r,
        )
        self.lock_wait = Histogram(
            "homeserver_storage_lock_wait_seconds",
            "Time writers spent waiting for a lock, by lock: room (a room's row, event "
            "persistence), stream_id:<stream> (taking stream positions), stream_key:<stream> "
            "(a stream's per-key order lock, e.g. one user's account data).",
            ("lock",),
            buckets=_DB_BUCKETS,
            registry=r,
        )
        self.events_persisted = Counter(
            "synapse_storage_events_persisted_events",
            "Events persisted (newly stored, outliers included).",
            registry=r,
        )
        self.events_persisted_sep = Counter(
            "synapse_storage_events_persisted_events_sep",
            "Events persisted, by type, origin (local/remote) and room version.",
            ("type", "origin_type", "room_version"),
            registry=r,
        )
        # --- federation ----------------------------------------------------------------------
        self.received_pdus = Counter(
            "synapse_federation_server_received_pdus",
            "PDUs received in federation transactions (retries of a transaction not counted).",
            registry=r,
        )
        self.received_edus = Counter(
            "synapse_federation_server_received_edus",
            "EDUs received in federation transactions (retries of a transaction not counted).",
            registry=r,
        )
        self.soft_failed_events = Counter(
            "synapse_federation_soft_failed_events",
            "Events received over federation and stored soft-failed.",
            registry=r,
        )
        self.sent_transactions = Counter(
            "synapse_federation_client_sent_transactions",
            "Federation transactions delivered (answered 200).",
            registry=r,
        )
        self.federation_transactions = Counter(
            "homeserver_federation_transactions",
            "Federation transaction attempts by destination and outcome: sent, failed (the "
            "destination is unreachable or answered 5xx/429/401/408; retried after a backoff) "
            "or refused (any other 4xx; dropped).",
            ("destination", "outcome"),
            registry=r,
        )
        self.federation_invites = Counter(
            "homeserver_federation_invites",
            "Federation invites sent (v2/invite), by outcome.",
            ("outcome",),
            registry=r,
        )
        self.remote_upgrade_follows = Counter(
            "homeserver_remote_upgrade_follows",
            "Attempts to move our users into a room another server upgraded, by outcome: "
            "joined, pending (refused; waiting for an invite), retry, rate_limited, skipped "
            "(opted out), failed.",
            ("outcome",),
            registry=r,
        )
        self.federation_queue = _FederationQueue()
        r.register(self.federation_queue)
        # --- room lifecycle ---------------------------------------------------------------------
        self.room_operations = Counter(
            "homeserver_room_operations",
            "Room lifecycle operations (operation: create/upgrade) by outcome: room_created, "
            "room_upgraded, room_upgrade_failed, rate_limited.",
            ("operation", "outcome"),
            registry=r,
        )
        # Every series exists from the start, so rate() sees the first increment of each.
        for operation, outcome in _ROOM_OPERATION_SERIES:
            self.room_operations.labels(operation, outcome)
        # --- the process and the build -----------------------------------------------------------
        Gauge(
            "homeserver_build_info",
            "Build information (the value is always 1).",
            ("version", "pythonversion", "osversion"),
            registry=r,
        ).labels(
            __version__,
            f"{platform.python_implementation()} {platform.python_version()}",
            f"{platform.system()} {platform.release()}",
        ).set(1)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self._exposition = CollectorRegistry(auto_describe=False)
        self._exposition.register(_WithLabel(r, SERVER_NAME_LABEL, server_name))

    # --- hooks ------------------------------------------------------------------------------------
    def watch_store(self, store: Store) -> None:
        """Observe ``store``'s transactions and persisted events, and read its transaction
        statistics and federation queue at scrape time."""
        store.db.transaction_observers.append(self.transaction_finished)
        store.db.lock_wait_observers.append(self.lock_waited)
        store.persister.listeners.append(self.events_stored)
        self.registry.register(_TransactionStatsCollector(store.db.stats))
        self._store = store

    def watch_redis(self, connected: Callable[[], bool]) -> None:
        """``homeserver_redis_connected``: 1 while the Redis bus is up, 0 while this process
        falls back to polling (only with ``redis.enabled``)."""
        Gauge(
            "homeserver_redis_connected",
            "Whether this process is connected to Redis (1) or falling back to polling (0).",
            registry=self.registry,
        ).set_function(lambda: 1.0 if connected() else 0.0)

    def transaction_finished(self, name: str, seconds: float) -> None:
        self.db_transaction_time.labels(name).observe(seconds)

    def lock_waited(self, lock: str, seconds: float) -> None:
        self.lock_wait.labels(lock).observe(seconds)

    def events_stored(self, events: Sequence[Event]) -> None:
        """After commit: ``events`` were newly stored (repeats of stored events are not)."""
        self.events_persisted.inc(len(events))
        for event in events:
            event_type = event.type if event.type in _TRACKED_EVENT_TYPES else "*other*"
            local = event.sender.split(":", 1)[-1] == self.server_name
            self.events_persisted_sep.labels(
                event_type, "local" if local else "remote", event.room_version.identifier
            ).inc()
            if event.internal.soft_failed:
                self.soft_failed_events.inc()

    def transaction_received(self, pdus: int, edus: int) -> None:
        self.received_pdus.inc(pdus)
        self.received_edus.inc(edus)

    def transaction_sent(self, destination: str, outcome: str) -> None:
        self.federation_transactions.labels(destination, outcome).inc()
        if outcome == "sent":
            self.sent_transactions.inc()

    def remote_upgrade_follow(self, outcome: str) -> None:
        self.remote_upgrade_follows.labels(outcome).inc()

    def room_operation(self, operation: str, outcome: str) -> None:
        self.room_operations.labels(operation, outcome).inc()

    # --- scraping -----------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Read what lives only in the database (the federation queue) before a scrape. A
        database outage leaves the last values: the scrape itself still answers."""
        if self._store is None:
            return
        try:
            self.federation_queue.pending = await self._store.outbox.pending_by_destination()
        except Exception as e:  # a scrape must not fail because the database did
            logger.warning("metrics: cannot read the federation queue: %s", e)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition (Prometheus text, or OpenMetrics if ``accept`` asks) and its
        content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self._exposition), content_type

    def value(self, name: str, **labels: str) -> float:
        """One sample's value (0 if absent), by its exposed name without ``server_name``: for
        tests and the admin API."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found


class _WithLabel(Collector):
    """Every sample of ``inner`` with one more label (``server_name``, as Synapse's)."""

    def __init__(self, inner: CollectorRegistry, name: str, value: str) -> None:
        self._inner = inner
        self._name = name
        self._value = value

    def collect(self) -> Iterable[Metric]:
        for metric in self._inner.collect():
            labelled = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            labelled.samples = [
                s._replace(labels={**s.labels, self._name: self._value}) for s in metric.samples
            ]
            yield labelled


class _TransactionStatsCollector(Collector):
    """``Database.stats`` read at scrape time: what the duration histogram does not show."""

    def __init__(self, stats: Mapping[str, TransactionStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        failures = CounterMetricFamily(
            "homeserver_storage_transaction_failures",
            "Database transactions rolled back, by name.",
            labels=("desc",),
        )
        retries = CounterMetricFamily(
            "homeserver_storage_transaction_retries",
            "Database transactions re-run after a serialization failure or deadlock, by name.",
            labels=("desc",),
        )
        statements = CounterMetricFamily(
            "homeserver_storage_transaction_statements",
            "SQL statements run inside database transactions, by transaction name.",
            labels=("desc",),
        )
        shared = CounterMetricFamily(
            "homeserver_storage_transaction_shared_commits",
            "Database transactions that committed in a COMMIT shared with others (SQLite group"
            " commit), by name.",
            labels=("desc",),
        )
        for name, stats in sorted(self._stats.items()):
            failures.add_metric((name,), stats.failures)
            retries.add_metric((name,), stats.retries)
            statements.add_metric((name,), stats.statements)
            shared.add_metric((name,), stats.shared_commits)
        yield failures
        yield retries
        yield statements
        yield shared


class _FederationQueue(Collector):
    """The outbox as last read by :meth:`HomeserverMetrics.refresh`."""

    def __init__(self) -> None:
        #: destination → queued entries (PDUs, EDUs and invites not delivered yet).
        self.pending: Mapping[str, int] = {}

    def collect(self) -> Iterable[Metric]:
        destinations = GaugeMetricFamily(
            "synapse_federation_transaction_queue_pending_destinations",
            "Destinations with undelivered federation traffic.",
        )
        destinations.add_metric((), len(self.pending))
        per_destination = GaugeMetricFamily(
            "homeserver_federation_queue_pending",
            "Undelivered federation entries (PDUs, EDUs, invites), by destination.",
            labels=("destination",),
        )
        for destination, count in sorted(self.pending.items()):
            per_destination.add_metric((destination,), count)
        yield destinations
        yield per_destination


#: domain event → (operation, outcome) of ``homeserver_room_operations_total``.
_ROOM_OPERATION_OF = {
    ROOM_CREATED: ("create", ROOM_CREATED_OUTCOME),
    ROOM_CREATE_RATE_LIMITED: ("create", RATE_LIMITED_OUTCOME),
    ROOM_UPGRADED: ("upgrade", ROOM_UPGRADED_OUTCOME),
    ROOM_UPGRADE_FAILED: ("upgrade", ROOM_UPGRADE_FAILED_OUTCOME),
}


def room_metrics_subscriber(metrics: HomeserverMetrics) -> Callable[[DomainEvent], None]:
    """A bus subscriber counting room lifecycle operations by outcome. An upgrade refused by
    the rate limiter is ``rate_limited``, not ``room_upgrade_failed``."""

    def subscriber(event: DomainEvent) -> None:
        found = _ROOM_OPERATION_OF.get(event.name)
        if found is None:
            return
        operation, outcome = found
        if event.name == ROOM_UPGRADE_FAILED and event.payload.get("reason") == "rate_limited":
            outcome = RATE_LIMITED_OUTCOME
        metrics.room_operation(operation, outcome)

    return subscriber
