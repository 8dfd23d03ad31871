"""The audit log: one JSON line per domain event on the ``homeserver.audit`` logger.

Payloads of domain events carry identifiers only (room, user, version, preset); this module
still copies only scalar values under known-safe keys, so a future payload holding something
sensitive (a token, a message body) is not written to the log by accident.
"""

from __future__ import annotations

import json
import logging

from homeserver.rooms.bus import DomainEvent

audit_logger = logging.getLogger("homeserver.audit")

#: payload keys that may be written to the audit log.
AUDITED_KEYS = frozenset(
    {
        "room_id",
        "creator_id",
        "preset",
        "room_version",
        "old_room_id",
        "new_room_id",
        "new_version",
        "user_id",
        "reason",
    }
)


def audit_line(event: DomainEvent) -> str:
    record: dict[str, object] = {"event": event.name}
    for key in sorted(event.payload):
        value = event.payload[key]
        if key in AUDITED_KEYS and (value is None or isinstance(value, str | int | bool)):
            record[key] = value
    return json.dumps(record, sort_keys=True, ensure_ascii=False)


def audit_log_subscriber(event: DomainEvent) -> None:
    """Subscribe to a :class:`~homeserver.rooms.bus.DomainEventBus`."""
    audit_logger.info("%s", audit_line(event))
