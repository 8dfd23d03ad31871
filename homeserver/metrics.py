"""A tiny in-process metrics registry rendered in the Prometheus text format (served at
``/_synapse/metrics``), plus the domain-event subscriber counting room operations.

Counters only: that is all the room lifecycle needs (success rate per operation); transaction
statistics are read straight from ``Database.stats`` at render time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from homeserver.rooms.bus import ROOM_CREATED, ROOM_UPGRADE_FAILED, ROOM_UPGRADED, DomainEvent
from homeserver.storage.database import TransactionStats

LabelValues = tuple[str, ...]

ROOM_OPERATIONS = "homeserver_room_operations_total"

#: domain event → (operation, outcome) of ``homeserver_room_operations_total``.
_ROOM_OPERATION_OF = {
    ROOM_CREATED: ("create", "success"),
    ROOM_UPGRADED: ("upgrade", "success"),
    ROOM_UPGRADE_FAILED: ("upgrade", "failure"),
}


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Iterable[str], values: Iterable[str]) -> str:
    pairs = [f'{n}="{escape_label_value(v)}"' for n, v in zip(names, values, strict=True)]
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass
class Counter:
    name: str
    help: str
    label_names: tuple[str, ...]
    _values: dict[LabelValues, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {sorted(labels)}")
        key = tuple(str(labels[n]) for n in self.label_names)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(tuple(str(labels[n]) for n in self.label_names), 0.0)

    def render(self, const_labels: Mapping[str, str]) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        names = (*self.label_names, *const_labels)
        for key, value in sorted(self._values.items()):
            labels = _labels(names, (*key, *const_labels.values()))
            lines.append(f"{self.name}{labels} {_number(value)}")
        return lines


class MetricsRegistry:
    """Counters by name. ``const_labels`` (e.g. ``server_name``, as Synapse's metrics carry)
    are added to every sample."""

    def __init__(self, const_labels: Mapping[str, str] | None = None) -> None:
        self.const_labels = dict(const_labels or {})
        self._counters: dict[str, Counter] = {}

    def counter(self, name: str, help_text: str, label_names: Iterable[str] = ()) -> Counter:
        existing = self._counters.get(name)
        if existing is not None:
            return existing
        counter = Counter(name, help_text, tuple(label_names))
        self._counters[name] = counter
        return counter

    def render(self, database_stats: Mapping[str, TransactionStats] | None = None) -> str:
        lines: list[str] = []
        for name in sorted(self._counters):
            lines.extend(self._counters[name].render(self.const_labels))
        if database_stats is not None:
            lines.extend(render_database_stats(database_stats, self.const_labels))
        return "\n".join(lines) + "\n"


def render_database_stats(
    stats: Mapping[str, TransactionStats], const_labels: Mapping[str, str]
) -> list[str]:
    series = (
        ("homeserver_db_transactions_total", "Database transactions run, by name.", "count"),
        ("homeserver_db_transaction_failures_total", "Transactions rolled back.", "failures"),
        ("homeserver_db_transaction_retries_total", "Transactions re-run.", "retries"),
        (
            "homeserver_db_transaction_seconds_total",
            "Time spent in transactions.",
            "total_seconds",
        ),
    )
    lines: list[str] = []
    names = ("name", *const_labels)
    for metric, help_text, attribute in series:
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
        for txn_name in sorted(stats):
            labels = _labels(names, (txn_name, *const_labels.values()))
            lines.append(f"{metric}{labels} {_number(getattr(stats[txn_name], attribute))}")
    return lines


def room_operations_counter(registry: MetricsRegistry) -> Counter:
    return registry.counter(
        ROOM_OPERATIONS, "Room lifecycle operations, by outcome.", ("operation", "outcome")
    )


def room_metrics_subscriber(registry: MetricsRegistry) -> Callable[[DomainEvent], None]:
    """A bus subscriber counting ``room.created``/``room.upgraded``/``room.upgrade.failed``."""
    counter = room_operations_counter(registry)

    def subscriber(event: DomainEvent) -> None:
        found = _ROOM_OPERATION_OF.get(event.name)
        if found is not None:
            operation, outcome = found
            counter.inc(operation=operation, outcome=outcome)

    return subscriber
