"""``instance_name`` and ``worker_leases``: who this process is among the processes sharing one
database, and how long the work it alone does (a federation destination, a background job) stays
its own once it stops renewing.

``instance_name`` is Synapse's key (a worker's name). Every process of a deployment needs a
distinct one; the default, the host name and the process ID, is distinct but changes at every
restart, so a restarted process cannot take back at once what its previous run held and waits
for those leases to expire. Give each process a stable name in its own config file.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from homeserver.config._reader import ConfigError, Reader

KEYS = frozenset({"instance_name", "worker_leases"})

DEFAULT_LEASE_TIMEOUT_SECONDS = 20.0
DEFAULT_POLL_INTERVAL_SECONDS = 1.0
#: The longest name accepted (it is stored in every lease row and shown in metrics).
MAX_INSTANCE_NAME_LENGTH = 100


def default_instance_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class InstanceConfig:
    #: This process's name among those sharing the database.
    instance_name: str = field(default_factory=default_instance_name)
    #: A lease (and an instance's heartbeat) not renewed for this long is free for another
    #: process to take: how long a dead process's federation destinations and jobs wait.
    lease_timeout_seconds: float = DEFAULT_LEASE_TIMEOUT_SECONDS
    #: How often a process looks for work other processes queued for it (federation
    #: destinations it owns); a cross-process wake-up makes it sooner.
    poll_interval_seconds: float = DEFAULT_POLL_INTERVAL_SECONDS

    @property
    def lease_timeout_ms(self) -> int:
        return int(self.lease_timeout_seconds * 1000)


def parse_instance(reader: Reader) -> InstanceConfig:
    name = reader.string("instance_name", None)
    if name is None:
        name = default_instance_name()
    elif (
        not name
        or len(name) > MAX_INSTANCE_NAME_LENGTH
        or not name.isprintable()
        # it is a field of Redis messages and lease rows: no separators
        or any(c.isspace() or c in ":\"'" for c in name)
    ):
        raise ConfigError(
            "instance_name",
            f"must be 1 to {MAX_INSTANCE_NAME_LENGTH} printable characters without spaces or :",
        )
    section = reader.sub("worker_leases")
    timeout = section.duration_seconds(
        "lease_timeout", DEFAULT_LEASE_TIMEOUT_SECONDS, bare_number_unit="s"
    )
    if not 0.1 <= timeout <= 3600:
        raise ConfigError("worker_leases.lease_timeout", "must be between 100ms and 1h")
    poll = section.duration_seconds(
        "poll_interval", DEFAULT_POLL_INTERVAL_SECONDS, bare_number_unit="s"
    )
    if not 0.01 <= poll <= 60:
        raise ConfigError("worker_leases.poll_interval", "must be between 10ms and 1m")
    section.warn_unknown()
    return InstanceConfig(
        instance_name=name, lease_timeout_seconds=timeout, poll_interval_seconds=poll
    )
