"""``listeners``, the TLS certificate they use (``tls_certificate_path``,
``tls_private_key_path``) and ``enable_metrics``, without which no listener serves metrics (as
in Synapse)."""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from homeserver.config._reader import ConfigError, Reader

KEYS = frozenset({"listeners", "tls_certificate_path", "tls_private_key_path", "enable_metrics"})

#: What this server can serve on a listener.
RESOURCE_NAMES = frozenset({"client", "federation", "keys", "metrics", "admin"})
#: Synapse resources a migrated config may name that this server does not serve (yet); they are
#: skipped with a warning instead of stopping start-up.
IGNORED_SYNAPSE_RESOURCES = frozenset({"media", "static", "openid", "health", "replication"})
#: Like Synapse: ``client`` brings the admin API (register_new_matrix_user talks to the client
#: listener), ``federation`` brings the key server.
_IMPLIED = {"client": {"admin"}, "federation": {"keys"}}

DEFAULT_PORT = 8008
DEFAULT_BIND_ADDRESSES = ("127.0.0.1",)
#: Seconds a client may take to send a request's head (also the idle time between requests).
DEFAULT_REQUEST_HEADER_TIMEOUT = 30.0
#: Seconds a client may take to send a request's body once its head has arrived (1 MiB, the
#: largest body taken, at about 140 kbit/s).
DEFAULT_REQUEST_BODY_TIMEOUT = 60.0
#: Open connections per listener; under the usual 1024 file descriptors of a process, with room
#: for database and federation connections when the operator raised nothing.
DEFAULT_MAX_CONNECTIONS = 800


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    port: int
    bind_addresses: tuple[str, ...]
    type: str
    tls: bool
    x_forwarded: bool
    #: Resource names as configured (filtered to the ones this server knows).
    resources: frozenset[str]
    request_header_timeout: float = DEFAULT_REQUEST_HEADER_TIMEOUT
    request_body_timeout: float = DEFAULT_REQUEST_BODY_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    @property
    def served_resources(self) -> frozenset[str]:
        """The configured resources plus the ones they imply."""
        served = set(self.resources)
        for name in self.resources:
            served |= _IMPLIED.get(name, set())
        return frozenset(served)


@dataclass(frozen=True, slots=True)
class TlsConfig:
    certificate_path: Path | None
    private_key_path: Path | None


def default_listener() -> ListenerConfig:
    return ListenerConfig(
        port=DEFAULT_PORT,
        bind_addresses=DEFAULT_BIND_ADDRESSES,
        type="http",
        tls=False,
        x_forwarded=False,
        resources=frozenset({"client", "federation"}),
    )


def _parse_resources(reader: Reader) -> frozenset[str]:
    names: set[str] = set()
    for item_path, item in reader.sub_list("resources"):
        resource = reader.item_reader(item_path, item)
        for name_path, name in resource.sub_list("names"):
            if not isinstance(name, str):
                raise ConfigError(name_path, "must be a resource name")
            if name in IGNORED_SYNAPSE_RESOURCES:
                reader.warnings.append(f"{name_path}: resource {name!r} is not served; ignored")
            elif name not in RESOURCE_NAMES:
                known = ", ".join(sorted(RESOURCE_NAMES))
                raise ConfigError(name_path, f"unknown resource {name!r} (known: {known})")
            else:
                names.add(name)
        resource.raw("compress")  # accepted for Synapse compatibility; responses are small
        resource.warn_unknown()
    return frozenset(names)


def _parse_listener(reader: Reader) -> ListenerConfig:
    port = reader.integer("port", minimum=1, maximum=65535)
    addresses = reader.string_list("bind_addresses", list(DEFAULT_BIND_ADDRESSES)) or []
    if not addresses:
        raise reader.error("bind_addresses", "must name at least one address")
    for index, address in enumerate(addresses):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError(
                f"{reader.key_path('bind_addresses')}[{index}]",
                f"{address!r} is not an IP address",
            ) from None

    listener_type = reader.string("type", "http")
    if listener_type not in ("http", "metrics"):
        raise reader.error("type", f"must be 'http' or 'metrics', not {listener_type!r}")
    resources = _parse_resources(reader)
    if listener_type == "metrics":
        # Synapse's separate metrics listener: the same as an http listener serving metrics.
        resources = frozenset({"metrics"})
    if not resources:
        raise reader.error("resources", "must name at least one resource to serve")

    listener = ListenerConfig(
        port=port,
        bind_addresses=tuple(addresses),
        type="http",
        tls=reader.boolean("tls", False),
        x_forwarded=reader.boolean("x_forwarded", False),
        resources=resources,
        request_header_timeout=reader.duration_seconds(
            "request_header_timeout", DEFAULT_REQUEST_HEADER_TIMEOUT, bare_number_unit="s"
        ),
        request_body_timeout=reader.duration_seconds(
            "request_body_timeout", DEFAULT_REQUEST_BODY_TIMEOUT, bare_number_unit="s"
        ),
        max_connections=reader.integer(
            "max_connections", DEFAULT_MAX_CONNECTIONS, minimum=1, maximum=1_000_000
        ),
    )
    reader.warn_unknown()
    return listener


def parse_listeners(reader: Reader) -> tuple[tuple[ListenerConfig, ...], TlsConfig]:
    tls = TlsConfig(
        certificate_path=reader.path_value("tls_certificate_path"),
        private_key_path=reader.path_value("tls_private_key_path"),
    )
    enable_metrics = reader.boolean("enable_metrics", False)
    if not reader.has("listeners"):
        return (default_listener(),), tls

    listeners: list[ListenerConfig] = []
    seen: dict[tuple[str, int], str] = {}
    for item_path, item in reader.sub_list("listeners"):
        listener_reader = reader.item_reader(item_path, item)
        listener = _parse_listener(listener_reader)
        for address in listener.bind_addresses:
            if (address, listener.port) in seen:
                raise ConfigError(
                    f"{item_path}.port",
                    f"{address}:{listener.port} is already used by {seen[address, listener.port]}",
                )
            seen[address, listener.port] = item_path
        if listener.tls and (tls.certificate_path is None or tls.private_key_path is None):
            raise ConfigError(
                f"{item_path}.tls",
                "needs tls_certificate_path and tls_private_key_path to be set",
            )
        listener = _gate_metrics(reader, item_path, listener, enable_metrics)
        if listener is not None:
            listeners.append(listener)
    if not listeners:
        raise reader.error("listeners", "must contain at least one listener")
    return tuple(listeners), tls


def _gate_metrics(
    reader: Reader, item_path: str, listener: ListenerConfig, enable_metrics: bool
) -> ListenerConfig | None:
    """Without ``enable_metrics: true`` the ``metrics`` resource is not served, and a listener
    serving nothing else is not started (Synapse does the same, with a warning)."""
    if enable_metrics or "metrics" not in listener.resources:
        return listener
    rest = listener.resources - {"metrics"}
    if not rest:
        reader.warnings.append(
            f"{item_path}: a metrics listener is configured but enable_metrics is not true;"
            " it is not started"
        )
        return None
    reader.warnings.append(
        f"{item_path}: resource 'metrics' is not served because enable_metrics is not true"
    )
    return dataclasses.replace(listener, resources=rest)
