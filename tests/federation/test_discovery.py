"""Server discovery: the pure resolution rules (tables), the well-known cache, and the
well-known fetch against a real local HTTPS server."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from aiohttp import web

from homeserver.crypto.signing import generate_signing_key
from homeserver.federation.client import FederationClient
from homeserver.federation.discovery import (
    ResolvedServer,
    ServerResolver,
    SrvRecord,
    WellKnownResponse,
    order_srv_records,
    parse_well_known,
    resolve_direct,
    resolve_with_srv,
    split_server_name,
    well_known_cache_seconds,
    well_known_error_cache_seconds,
)
from tests.federation.fake_remote import LOOPBACK_WHITELIST
from tests.federation.tls_helpers import self_signed_cert, server_ssl_context
from tests.harness import make_config

H = 3600


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("example.org", ("example.org", None)),
        ("example.org:8449", ("example.org", 8449)),
        ("1.2.3.4", ("1.2.3.4", None)),
        ("1.2.3.4:80", ("1.2.3.4", 80)),
        ("[::1]", ("::1", None)),
        ("[2001:db8::1]:8448", ("2001:db8::1", 8448)),
    ],
)
def test_split_server_name(name: str, expected: tuple[str, int | None]) -> None:
    assert split_server_name(name) == expected


@pytest.mark.parametrize("name", ["", "exa mple.org", "example.org:0", "[::1", "a:b:c"])
def test_split_rejects_invalid(name: str) -> None:
    with pytest.raises(ValueError):
        split_server_name(name)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # 1. IP literal: that IP, its port or 8448, Host = the server name, no SNI.
        ("1.2.3.4", ResolvedServer("1.2.3.4", 8448, "1.2.3.4", None)),
        ("1.2.3.4:8000", ResolvedServer("1.2.3.4", 8000, "1.2.3.4:8000", None)),
        ("[::1]", ResolvedServer("::1", 8448, "[::1]", None)),
        ("[::1]:8000", ResolvedServer("::1", 8000, "[::1]:8000", None)),
        # 2. Hostname with an explicit port: direct; Host keeps the port, cert for the host.
        ("localhost:8510", ResolvedServer("localhost", 8510, "localhost:8510", "localhost")),
        # 3+. Without a port: not direct.
        ("example.org", None),
    ],
)
def test_resolve_direct(name: str, expected: ResolvedServer | None) -> None:
    assert resolve_direct(name) == expected


def test_resolve_with_srv_keeps_host_and_cert_name() -> None:
    records = [SrvRecord(10, 0, 8443, "fed.example.org")]
    assert resolve_with_srv("example.org", records) == [
        ResolvedServer("fed.example.org", 8443, "example.org", "example.org")
    ]
    # No SRV: the host itself on 8448.
    assert resolve_with_srv("example.org", []) == [
        ResolvedServer("example.org", 8448, "example.org", "example.org")
    ]
    # "." means the service is explicitly not offered.
    assert resolve_with_srv("example.org", [SrvRecord(0, 0, 0, ".")]) == []


def test_srv_order_priority_then_weight() -> None:
    records = [
        SrvRecord(20, 0, 1, "late.example"),
        SrvRecord(10, 0, 1, "zero-weight.example"),
        SrvRecord(10, 100, 1, "heavy.example"),
    ]
    for seed in range(20):
        ordered = order_srv_records(records, random.Random(seed))
        assert [r.target for r in ordered][-1] == "late.example"
        assert {r.target for r in ordered[:2]} == {"zero-weight.example", "heavy.example"}
    # Weight 100 vs 0: the heavy record comes first almost always.
    firsts = [order_srv_records(records, random.Random(s))[0].target for s in range(50)]
    assert firsts.count("heavy.example") >= 45


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"m.server": "delegated.example:443"}', "delegated.example:443"),
        (b'{"m.server": "delegated.example"}', "delegated.example"),
        (b'{"m.server": "1.2.3.4:8448", "other": 1}', "1.2.3.4:8448"),
        (b'{"m.server": "bad name"}', None),
        (b'{"m.server": 5}', None),
        (b"{}", None),
        (b"[]", None),
        (b"not json", None),
        (b"\xff\xfe", None),
    ],
)
def test_parse_well_known(body: bytes, expected: str | None) -> None:
    assert parse_well_known(body) == expected


@pytest.mark.parametrize(
    ("cache_control", "seconds"),
    [
        (None, 24 * H),
        ("", 24 * H),
        ("public", 24 * H),
        ("max-age=3600", H),
        ("public, max-age=7200, must-revalidate", 2 * H),
        ('max-age="600"', 600),
        ("max-age=999999", 48 * H),
        ("max-age=1", 300),
        ("no-store", 300),
        ("no-cache, max-age=9000", 300),
    ],
)
def test_well_known_cache_seconds(cache_control: str | None, seconds: int) -> None:
    assert well_known_cache_seconds(cache_control) == seconds


@pytest.mark.parametrize(
    ("failures", "seconds"), [(1, 120), (2, 240), (3, 480), (5, 1920), (6, 3600), (50, 3600)]
)
def test_well_known_error_backoff(failures: int, seconds: int) -> None:
    assert well_known_error_cache_seconds(failures) == seconds


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


class FakeDns:
    def __init__(self, well_known: dict[str, WellKnownResponse], srv: dict[str, list[SrvRecord]]):
        self.well_known = well_known
        self.srv = srv
        self.fetches: list[str] = []
        self.lookups: list[str] = []

    async def fetch(self, host: str) -> WellKnownResponse:
        self.fetches.append(host)
        if host not in self.well_known:
            raise OSError("connection refused")
        return self.well_known[host]

    async def lookup(self, name: str) -> list[SrvRecord]:
        self.lookups.append(name)
        return self.srv.get(name, [])


def _ok(body: str, cache_control: str | None = None) -> WellKnownResponse:
    return WellKnownResponse(200, body.encode(), cache_control)


@pytest.mark.parametrize(
    ("well_known", "srv", "expected"),
    [
        # 3.1 delegated to an IP literal
        (
            {"a.example": _ok('{"m.server": "5.6.7.8"}')},
            {},
            [ResolvedServer("5.6.7.8", 8448, "5.6.7.8", None)],
        ),
        # 3.2 delegated host with port
        (
            {"a.example": _ok('{"m.server": "b.example:1234"}')},
            {},
            [ResolvedServer("b.example", 1234, "b.example:1234", "b.example")],
        ),
        # 3.3 delegated host, SRV _matrix-fed on the delegated name
        (
            {"a.example": _ok('{"m.server": "b.example"}')},
            {"_matrix-fed._tcp.b.example": [SrvRecord(1, 1, 9000, "srv.b.example")]},
            [ResolvedServer("srv.b.example", 9000, "b.example", "b.example")],
        ),
        # 3.4 deprecated _matrix SRV on the delegated name
        (
            {"a.example": _ok('{"m.server": "b.example"}')},
            {"_matrix._tcp.b.example": [SrvRecord(1, 1, 9001, "old.b.example")]},
            [ResolvedServer("old.b.example", 9001, "b.example", "b.example")],
        ),
        # 3.5 delegated host, no SRV: 8448
        (
            {"a.example": _ok('{"m.server": "b.example"}')},
            {},
            [ResolvedServer("b.example", 8448, "b.example", "b.example")],
        ),
        # 4. no well-known: _matrix-fed SRV on the original name
        (
            {},
            {"_matrix-fed._tcp.a.example": [SrvRecord(1, 1, 9002, "srv.a.example")]},
            [ResolvedServer("srv.a.example", 9002, "a.example", "a.example")],
        ),
        # 5. _matrix-fed wins over _matrix
        (
            {"a.example": WellKnownResponse(404, b"", None)},
            {
                "_matrix-fed._tcp.a.example": [SrvRecord(1, 1, 1, "new.a.example")],
                "_matrix._tcp.a.example": [SrvRecord(1, 1, 2, "old.a.example")],
            },
            [ResolvedServer("new.a.example", 1, "a.example", "a.example")],
        ),
        # 6. nothing: 8448; an invalid well-known counts as none
        (
            {"a.example": _ok('{"m.server": "bad name"}')},
            {},
            [ResolvedServer("a.example", 8448, "a.example", "a.example")],
        ),
    ],
)
async def test_resolution_order(
    well_known: dict[str, WellKnownResponse],
    srv: dict[str, list[SrvRecord]],
    expected: list[ResolvedServer],
) -> None:
    dns = FakeDns(well_known, srv)
    resolver = ServerResolver(dns.fetch, dns.lookup, FakeClock())
    assert await resolver.resolve("a.example") == expected


async def test_explicit_port_skips_well_known_and_srv() -> None:
    dns = FakeDns({}, {})
    resolver = ServerResolver(dns.fetch, dns.lookup, FakeClock())
    await resolver.resolve("a.example:8448")
    await resolver.resolve("10.0.0.1")
    assert dns.fetches == [] and dns.lookups == []


async def test_well_known_cached_per_cache_control() -> None:
    clock = FakeClock()
    dns = FakeDns({"a.example": _ok('{"m.server": "b.example:1"}', "max-age=3600")}, {})
    resolver = ServerResolver(dns.fetch, dns.lookup, clock)
    await resolver.resolve("a.example")
    clock.now += 3599 * 1000
    await resolver.resolve("a.example")
    assert dns.fetches == ["a.example"]
    clock.now += 2 * 1000
    dns.well_known["a.example"] = _ok('{"m.server": "c.example:2"}')
    assert (await resolver.resolve("a.example"))[0].target == "c.example"
    assert dns.fetches == ["a.example", "a.example"]


async def test_well_known_failures_cached_with_backoff() -> None:
    clock = FakeClock()
    dns = FakeDns({}, {})
    resolver = ServerResolver(dns.fetch, dns.lookup, clock)
    await resolver.resolve("a.example")
    clock.now += 119 * 1000
    await resolver.resolve("a.example")
    assert len(dns.fetches) == 1
    clock.now += 2 * 1000  # first failure cached 2 min
    await resolver.resolve("a.example")
    assert len(dns.fetches) == 2
    clock.now += 200 * 1000  # second failure: 4 min
    await resolver.resolve("a.example")
    assert len(dns.fetches) == 2
    clock.now += 41 * 1000
    dns.well_known["a.example"] = _ok('{"m.server": "b.example:7"}')
    assert (await resolver.resolve("a.example"))[0].port == 7


async def test_well_known_cache_is_bounded_in_size() -> None:
    """Positive and negative answers alike: N+1 distinct names keep N entries, the least
    recently used one forgotten (and fetched again when asked)."""
    clock = FakeClock()
    dns = FakeDns({"s0.example": _ok('{"m.server": "b.example:1"}')}, {})
    resolver = ServerResolver(dns.fetch, dns.lookup, clock, cache_size=3)
    for i in range(4):
        await resolver.resolve(f"s{i}.example")
    assert len(resolver._well_known) == 3
    await resolver.resolve("s3.example")
    assert dns.fetches.count("s3.example") == 1  # still cached
    await resolver.resolve("s0.example")
    assert dns.fetches.count("s0.example") == 2  # was evicted


async def test_well_known_entries_leave_memory_once_expired() -> None:
    clock = FakeClock()
    dns = FakeDns({"a.example": _ok('{"m.server": "b.example:1"}', "max-age=600")}, {})
    resolver = ServerResolver(dns.fetch, dns.lookup, clock, cache_size=10)
    await resolver.resolve("a.example")
    await resolver.resolve("gone.example")
    clock.now += 2 * H * 1000  # well past both lifetimes and the failure back-off memory
    assert list(resolver._well_known.keys()) == []
    await resolver.resolve("a.example")
    assert dns.fetches == ["a.example", "gone.example", "a.example"]


# --- the real fetch, over HTTPS on loopback ------------------------------------------------


@pytest.fixture
async def well_known_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    mode = {"well_known": "ok"}

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path == "/.well-known/matrix/server":
            if mode["well_known"] == "loop":
                raise web.HTTPFound("/.well-known/matrix/server")
            if mode["well_known"] == "redirect":
                raise web.HTTPFound("/elsewhere")
            return web.json_response(
                {"m.server": "delegated.example:4321"}, headers={"Cache-Control": "max-age=600"}
            )
        if request.path == "/elsewhere":
            return web.json_response({"m.server": "redirected.example:1"})
        return web.Response(status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    cert, key = self_signed_cert(tmp_path / "wk")
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl_context(cert, key))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield port, mode
    await runner.cleanup()


def _client(tmp_path: Path, port: int, **config: object) -> FederationClient:
    settings = {"federation_verify_certificates": False, "ip_range_whitelist": LOOPBACK_WHITELIST}
    settings.update(config)
    fed = make_config(tmp_path, **settings).federation

    async def no_srv(name: str) -> list[SrvRecord]:
        return []

    return FederationClient(
        "us.example",
        generate_signing_key("k"),
        fed,
        srv_lookup=no_srv,
        well_known_port=port,
    )


async def test_well_known_fetched_over_https(tmp_path: Path, well_known_server) -> None:  # type: ignore[no-untyped-def]
    port, _ = well_known_server
    client = _client(tmp_path, port)
    try:
        assert await client.resolver.resolve("localhost") == [
            ResolvedServer("delegated.example", 4321, "delegated.example:4321", "delegated.example")
        ]
        response = await client._fetch_well_known("localhost")
        assert response.cache_control == "max-age=600"
    finally:
        await client.close()


async def test_well_known_blocked_ip_is_not_fetched(tmp_path: Path, well_known_server) -> None:  # type: ignore[no-untyped-def]
    port, _ = well_known_server
    # Default blacklist, no whitelist: 127.0.0.1 is private.
    client = _client(tmp_path, port, ip_range_whitelist=[])
    try:
        with pytest.raises(OSError):
            await client._fetch_well_known("localhost")
        # ...so resolution falls through to SRV / 8448 on the original name.
        assert await client.resolver.resolve("localhost") == [
            ResolvedServer("localhost", 8448, "localhost", "localhost")
        ]
    finally:
        await client.close()


async def test_well_known_with_certificate_checks_refuses_self_signed(
    tmp_path: Path,
    well_known_server,  # type: ignore[no-untyped-def]
) -> None:
    port, _ = well_known_server
    client = _client(tmp_path, port, federation_verify_certificates=True)
    try:
        with pytest.raises(OSError):
            await client._fetch_well_known("localhost")
    finally:
        await client.close()


async def test_well_known_redirects_followed_but_not_loops(
    tmp_path: Path,
    well_known_server,  # type: ignore[no-untyped-def]
) -> None:
    port, mode = well_known_server
    client = _client(tmp_path, port)
    try:
        mode["well_known"] = "redirect"
        response = await client._fetch_well_known("localhost")
        assert parse_well_known(response.body) == "redirected.example:1"
        mode["well_known"] = "loop"
        with pytest.raises(OSError):
            await client._fetch_well_known("localhost")
    finally:
        await client.close()
