"""Federation and outbound-request policy: ``federation_verify_certificates``,
``ip_range_blacklist`` / ``ip_range_whitelist``, ``federation_domain_whitelist``, and the
``federation:`` section (Synapse's keys) for retries of unreachable servers and request timeouts."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from homeserver.config._reader import ConfigError, Reader
from homeserver.types import server_name_error

KEYS = frozenset(
    {
        "federation_verify_certificates",
        "ip_range_blacklist",
        "ip_range_whitelist",
        "federation_domain_whitelist",
        "federation",
    }
)

#: Synapse's defaults for the ``federation:`` section.
DEFAULT_MIN_RETRY_INTERVAL_MS = 10 * 60 * 1000
DEFAULT_RETRY_MULTIPLIER = 2.0
DEFAULT_MAX_RETRY_INTERVAL_MS = 7 * 24 * 3600 * 1000
DEFAULT_CLIENT_TIMEOUT_MS = 60 * 1000

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Ranges no outbound request may reach unless whitelisted: loopback, private, link-local,
#: shared (CGNAT), documentation, benchmarking, multicast and reserved (IANA special-purpose
#: registries). Without this a remote server name resolving to 127.0.0.1 could probe the
#: operator's internal network.
DEFAULT_IP_RANGE_BLACKLIST: tuple[str, ...] = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
)

#: Added to any configured blacklist, as Synapse does: connecting to the unspecified address
#: reaches this host itself.
ALWAYS_BLACKLISTED: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("0.0.0.0/32"),
    ipaddress.ip_network("::/128"),
)


@dataclass(frozen=True, slots=True)
class FederationConfig:
    federation_verify_certificates: bool
    ip_range_blacklist: tuple[IPNetwork, ...]
    ip_range_whitelist: tuple[IPNetwork, ...]
    #: None: federate with anyone. Otherwise only these server names.
    federation_domain_whitelist: frozenset[str] | None
    #: After a first failure, wait this long before trying a destination again.
    destination_min_retry_interval_ms: int = DEFAULT_MIN_RETRY_INTERVAL_MS
    #: Each further failure multiplies the wait by this (with jitter, as Synapse).
    destination_retry_multiplier: float = DEFAULT_RETRY_MULTIPLIER
    #: The wait between attempts never exceeds this.
    destination_max_retry_interval_ms: int = DEFAULT_MAX_RETRY_INTERVAL_MS
    #: One outbound federation request gives up after this long.
    client_timeout_ms: int = DEFAULT_CLIENT_TIMEOUT_MS

    def is_ip_allowed(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether an outbound request may connect to ``address`` (whitelist beats blacklist).
        An IPv4-mapped IPv6 address is judged as the IPv4 address it reaches too, so a
        blacklist of IPv4 ranges cannot be bypassed through ``::ffff:a.b.c.d``."""
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        if mapped is not None and not self.is_ip_allowed(mapped):
            return False
        if any(address in network for network in self.ip_range_whitelist):
            return True
        return not any(address in network for network in self.ip_range_blacklist)

    def is_domain_allowed(self, server_name: str) -> bool:
        whitelist = self.federation_domain_whitelist
        return whitelist is None or server_name in whitelist


def _networks(reader: Reader, key: str, default: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    values = reader.string_list(key, list(default)) or []
    networks: list[IPNetwork] = []
    for index, value in enumerate(values):
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ConfigError(
                f"{reader.key_path(key)}[{index}]", f"{value!r} is not an IP address or range"
            ) from None
    return tuple(networks)


def parse_federation(reader: Reader) -> FederationConfig:
    whitelist = reader.string_list("federation_domain_whitelist", None)
    if whitelist is not None:
        for index, name in enumerate(whitelist):
            reason = server_name_error(name)
            if reason:
                raise ConfigError(
                    f"{reader.key_path('federation_domain_whitelist')}[{index}]", reason
                )
    section = reader.sub("federation")
    config = FederationConfig(
        federation_verify_certificates=reader.boolean("federation_verify_certificates", True),
        ip_range_blacklist=_networks(reader, "ip_range_blacklist", DEFAULT_IP_RANGE_BLACKLIST)
        + ALWAYS_BLACKLISTED,
        ip_range_whitelist=_networks(reader, "ip_range_whitelist", ()),
        federation_domain_whitelist=None if whitelist is None else frozenset(whitelist),
        destination_min_retry_interval_ms=_duration_ms(
            section, "destination_min_retry_interval", DEFAULT_MIN_RETRY_INTERVAL_MS
        ),
        destination_retry_multiplier=section.number(
            "destination_retry_multiplier", DEFAULT_RETRY_MULTIPLIER, minimum=1.0
        ),
        destination_max_retry_interval_ms=_duration_ms(
            section, "destination_max_retry_interval", DEFAULT_MAX_RETRY_INTERVAL_MS
        ),
        client_timeout_ms=_duration_ms(section, "client_timeout", DEFAULT_CLIENT_TIMEOUT_MS),
    )
    if config.destination_max_retry_interval_ms < config.destination_min_retry_interval_ms:
        raise section.error(
            "destination_max_retry_interval",
            "must not be shorter than destination_min_retry_interval",
        )
    # Synapse's other keys of this section (its HTTP client's own retry delays) mean nothing
    # here: they draw the usual unknown-key warning.
    section.warn_unknown()
    return config


def _duration_ms(section: Reader, key: str, default_ms: int) -> int:
    # Synapse's keys: a bare number is milliseconds, a string may carry a unit ("10m", "1w").
    seconds = section.duration_seconds(key, default_ms / 1000, bare_number_unit="ms")
    return max(1, round(seconds * 1000))
