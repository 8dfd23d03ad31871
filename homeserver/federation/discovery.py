"""Resolving a server name to where we connect (server-server API, "Resolving server names").

Order: an IP literal or a name with an explicit port is used directly; otherwise
``https://<host>/.well-known/matrix/server`` may delegate to another name (cached per
Cache-Control: default 24 h, at most 48 h; failures cached with back-off up to 1 h; at most
:data:`WELL_KNOWN_CACHE_SIZE` hosts, least recently used forgotten first); then SRV
``_matrix-fed._tcp`` and the deprecated ``_matrix._tcp``; then the host on port 8448.

The result keeps three names apart: where to connect (``target``/``port``), the name the TLS
certificate must match and the SNI we send (``tls_server_name``, None for IP literals), and the
``Host`` header. Signed JSON and X-Matrix always use the server name before delegation; that is
the caller's business.

The pure functions are table-tested; ``ServerResolver`` adds the I/O, both halves of which (the
well-known fetch and the SRV lookup) are injected so tests can run them against local servers.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from homeserver.bounded_cache import BoundedTtlCache
from homeserver.clock import WallClock
from homeserver.types import is_valid_server_name

logger = logging.getLogger(__name__)

DEFAULT_FEDERATION_PORT = 8448
#: Well-known cache lifetimes (seconds).
WELL_KNOWN_DEFAULT_CACHE = 24 * 3600
WELL_KNOWN_MAX_CACHE = 48 * 3600
#: Synapse refuses lifetimes this short too, so a misconfigured max-age=0 cannot make every
#: request refetch.
WELL_KNOWN_MIN_CACHE = 5 * 60
WELL_KNOWN_ERROR_FIRST_CACHE = 2 * 60
WELL_KNOWN_ERROR_MAX_CACHE = 3600
#: A well-known document is a tiny JSON object; refuse to read more.
WELL_KNOWN_MAX_BYTES = 50 * 1024
#: Hosts whose well-known answer (or failure) is remembered; each name a peer makes us resolve
#: takes an entry, so the least recently used go first.
WELL_KNOWN_CACHE_SIZE = 10_000
#: A failure is remembered this long after its back-off ends, so the next one backs off longer.
WELL_KNOWN_FAILURE_MEMORY = 3600


@dataclass(frozen=True, slots=True)
class ResolvedServer:
    #: hostname to look up (A/AAAA) or IP literal (without brackets) to connect to.
    target: str
    port: int
    #: the ``Host`` header value.
    host_header: str
    #: the name for SNI and certificate checks; None when connecting to an IP literal.
    tls_server_name: str | None


@dataclass(frozen=True, slots=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str


def split_server_name(name: str) -> tuple[str, int | None]:
    """``host[:port]`` → (host without IPv6 brackets, port or None). Raises ValueError for a
    name that is not a valid server name."""
    if not is_valid_server_name(name):
        raise ValueError(f"invalid server name {name!r}")
    if name.startswith("["):
        host, _, rest = name[1:].partition("]")
        return host, int(rest[1:]) if rest else None
    host, sep, port = name.rpartition(":")
    if sep and port.isdigit():
        return host, int(port)
    return name, None


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host_with_port(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def resolve_direct(name: str) -> ResolvedServer | None:
    """Steps 1 and 2 (and 3.1/3.2 for a delegated name): an IP literal, or a hostname with an
    explicit port, needs no lookup. None when well-known/SRV must be consulted."""
    host, port = split_server_name(name)
    if is_ip_literal(host):
        return ResolvedServer(
            target=host,
            port=port or DEFAULT_FEDERATION_PORT,
            host_header=_host_with_port(host, port),
            tls_server_name=None,
        )
    if port is not None:
        return ResolvedServer(
            target=host, port=port, host_header=_host_with_port(host, port), tls_server_name=host
        )
    return None


def resolve_with_srv(host: str, records: Sequence[SrvRecord]) -> list[ResolvedServer]:
    """Candidates for a port-less ``host`` given its SRV records (already the right service);
    with no records, the host itself on 8448. ``Host`` and certificate stay ``host``."""
    if not records:
        return [ResolvedServer(host, DEFAULT_FEDERATION_PORT, host, host)]
    return [ResolvedServer(r.target, r.port, host, host) for r in order_srv_records(records)]


def order_srv_records(
    records: Sequence[SrvRecord], rng: random.Random | None = None
) -> list[SrvRecord]:
    """RFC 2782 order: ascending priority; within a priority a weighted random shuffle. A single
    record with target ``.`` means "no service" and yields nothing."""
    if len(records) == 1 and records[0].target in (".", ""):
        return []
    choose = rng or random.Random()
    ordered: list[SrvRecord] = []
    for priority in sorted({r.priority for r in records}):
        group = [r for r in records if r.priority == priority and r.target not in (".", "")]
        while group:
            total = sum(r.weight for r in group)
            if total == 0:
                pick = group[0]
            else:
                point = choose.uniform(0, total)
                running = 0
                pick = group[-1]
                for record in group:
                    running += record.weight
                    if running >= point:
                        pick = record
                        break
            ordered.append(pick)
            group.remove(pick)
    return ordered


def parse_well_known(body: bytes) -> str | None:
    """The delegated server name in a ``/.well-known/matrix/server`` body, or None if the body
    is not a JSON object with a valid ``m.server``."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict):
        return None
    delegated = document.get("m.server")
    if not isinstance(delegated, str) or not is_valid_server_name(delegated):
        return None
    return delegated


_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)\"?", re.IGNORECASE)


def well_known_cache_seconds(cache_control: str | None) -> int:
    """How long to keep a valid well-known answer: its ``max-age`` within [5 min, 48 h], 24 h
    without one. ``no-store``/``no-cache`` count as the minimum."""
    if cache_control:
        lowered = cache_control.lower()
        if "no-store" in lowered or "no-cache" in lowered:
            return WELL_KNOWN_MIN_CACHE
        match = _MAX_AGE.search(cache_control)
        if match:
            return max(WELL_KNOWN_MIN_CACHE, min(int(match.group(1)), WELL_KNOWN_MAX_CACHE))
    return WELL_KNOWN_DEFAULT_CACHE


def well_known_error_cache_seconds(consecutive_failures: int) -> int:
    """Back-off for a host without a usable well-known: 2 min doubling per failure, ≤ 1 h."""
    exponent = max(0, consecutive_failures - 1)
    return min(WELL_KNOWN_ERROR_FIRST_CACHE * 2 ** min(exponent, 16), WELL_KNOWN_ERROR_MAX_CACHE)


@dataclass(frozen=True, slots=True)
class WellKnownResponse:
    status: int
    body: bytes
    cache_control: str | None


#: ``fetch(hostname)`` → the response of ``GET https://hostname/.well-known/matrix/server``
#: (a few https redirects followed), or raises OSError / asyncio.TimeoutError if it could not
#: be fetched.
WellKnownFetcher = Callable[[str], Awaitable[WellKnownResponse]]
#: ``lookup(name)`` → SRV records of ``name`` ([] if none).
SrvLookup = Callable[[str], Awaitable[list[SrvRecord]]]


@dataclass
class _WellKnownEntry:
    delegated: str | None
    expires_ms: int
    failures: int


class ServerResolver:
    """Resolves server names with a per-process well-known cache.

    The cache is only an optimisation: losing it (another process, a restart) means a refetch,
    never a wrong answer.
    """

    def __init__(
        self,
        fetch_well_known: WellKnownFetcher,
        srv_lookup: SrvLookup,
        clock: WallClock,
        *,
        cache_size: int = WELL_KNOWN_CACHE_SIZE,
    ):
        self._fetch = fetch_well_known
        self._srv = srv_lookup
        self._clock = clock
        longest = max(WELL_KNOWN_MAX_CACHE, WELL_KNOWN_ERROR_MAX_CACHE + WELL_KNOWN_FAILURE_MEMORY)
        self._well_known: BoundedTtlCache[str, _WellKnownEntry] = BoundedTtlCache(
            cache_size, longest * 1000, clock
        )

    async def resolve(self, server_name: str) -> list[ResolvedServer]:
        """Candidates to try in order (several only when SRV gives several). Raises ValueError
        for an invalid server name."""
        direct = resolve_direct(server_name)
        if direct is not None:
            return [direct]
        host, _ = split_server_name(server_name)
        delegated = await self._delegated_name(host)
        if delegated is not None:
            delegated_direct = resolve_direct(delegated)
            if delegated_direct is not None:
                return [delegated_direct]
            host, _ = split_server_name(delegated)
        return resolve_with_srv(host, await self._srv_records(host))

    async def _srv_records(self, host: str) -> list[SrvRecord]:
        for service in ("_matrix-fed._tcp", "_matrix._tcp"):
            records = await self._srv(f"{service}.{host}")
            if records:
                return records
        return []

    async def _delegated_name(self, host: str) -> str | None:
        now = self._clock()
        entry = self._well_known.get(host)
        if entry is not None and entry.expires_ms > now:
            return entry.delegated
        failures = entry.failures if entry is not None and entry.delegated is None else 0
        try:
            response = await self._fetch(host)
        except (OSError, TimeoutError) as e:
            logger.info("no well-known for %s: %s", host, e)
            response = None
        delegated = None
        if response is not None and response.status == 200:
            delegated = parse_well_known(response.body)
        if delegated is not None:
            lifetime = well_known_cache_seconds(response.cache_control if response else None)
            entry = _WellKnownEntry(delegated, now + lifetime * 1000, 0)
            self._well_known.set(host, entry, lifetime * 1000)
        else:
            failures += 1
            lifetime = well_known_error_cache_seconds(failures)
            entry = _WellKnownEntry(None, now + lifetime * 1000, failures)
            self._well_known.set(host, entry, (lifetime + WELL_KNOWN_FAILURE_MEMORY) * 1000)
        return delegated


async def dns_srv_lookup(name: str) -> list[SrvRecord]:
    """SRV records from the system's DNS servers ([] when there are none or DNS fails: the
    spec's next step, port 8448, is then tried)."""
    import dns.asyncresolver
    import dns.exception
    import dns.resolver

    try:
        answer = await dns.asyncresolver.resolve(name, "SRV", lifetime=10.0)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
        return []
    except dns.exception.DNSException as e:
        logger.info("SRV lookup of %s failed: %s", name, e)
        return []
    return [
        SrvRecord(
            priority=int(record.priority),
            weight=int(record.weight),
            port=int(record.port),
            target=record.target.to_text(omit_final_dot=True),
        )
        for record in answer
    ]
