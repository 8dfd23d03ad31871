"""Outbound requests cannot be turned inward: the IP policy holds on the address actually
connected to, at every redirect hop of ``.well-known`` and for every delegation or SRV target.

Layout (the config is explicit in every test): ``127.0.0.0/8`` is blacklisted and only
``127.0.0.2`` whitelisted, so servers on 127.0.0.2 stand for public hosts and a server on
127.0.0.1 stands for an internal service that must never see a request. Names resolve through a
fake DNS handed to the client (the real resolver would say nothing about ``*.test``).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from homeserver.crypto.signing import generate_signing_key
from homeserver.federation.client import (
    MAX_WELL_KNOWN_REDIRECTS,
    FederationClient,
    FederationUnreachable,
)
from homeserver.federation.discovery import ResolvedServer, SrvRecord
from tests.federation.tls_helpers import self_signed_cert, server_ssl_context
from tests.harness import make_config

PUBLIC_IP = "127.0.0.2"
INTERNAL_IP = "127.0.0.1"
POLICY = {"ip_range_blacklist": ["127.0.0.0/8"], "ip_range_whitelist": [f"{PUBLIC_IP}/32"]}
WELL_KNOWN = "/.well-known/matrix/server"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeDns(AbstractResolver):
    """A/AAAA answers from a table; unknown names do not resolve."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.table:
            raise OSError(f"{host} does not resolve")
        address = self.table[host]
        return [
            ResolveResult(
                hostname=host, host=address, port=port, family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        pass


@dataclass
class Site:
    port: int
    log: list[str] = field(default_factory=list)


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Site]]]:
    runners: list[web.AppRunner] = []
    cert, key = self_signed_cert(tmp_path / "certs")

    async def start(host: str, handler: Handler, *, tls: bool = True) -> Site:
        site_log: list[str] = []

        async def logged(request: web.Request) -> web.StreamResponse:
            site_log.append(request.path_qs)
            return await handler(request)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", logged)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(
            runner, host, 0, ssl_context=server_ssl_context(cert, key) if tls else None
        )
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return Site(port, site_log)

    yield start
    for runner in runners:
        await runner.cleanup()


def _delegate(target: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"m.server": target})

    return handler


def _redirect_to(location: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(location)

    return handler


def _client(tmp_path: Path, well_known_port: int, dns: dict[str, str]) -> FederationClient:
    config = make_config(tmp_path, federation_verify_certificates=False, **POLICY).federation

    async def srv_lookup(name: str) -> list[SrvRecord]:
        return []

    return FederationClient(
        "us.example",
        generate_signing_key("k"),
        config,
        srv_lookup=srv_lookup,
        well_known_port=well_known_port,
        dns_resolver=FakeDns(dns),
    )


def _no_well_known(name: str) -> list[ResolvedServer]:
    return [ResolvedServer(name, 8448, name, name)]


@pytest.mark.parametrize("via", ["ip_literal", "name"])
async def test_well_known_redirect_to_internal_service_is_never_followed(
    tmp_path: Path, serve: Callable[..., Awaitable[Site]], via: str
) -> None:
    internal = await serve(INTERNAL_IP, _delegate("evil.example:1"))
    host = INTERNAL_IP if via == "ip_literal" else "internal.test"
    public = await serve(PUBLIC_IP, _redirect_to(f"https://{host}:{internal.port}{WELL_KNOWN}"))
    client = _client(
        tmp_path, public.port, {"attacker.test": PUBLIC_IP, "internal.test": INTERNAL_IP}
    )
    try:
        # The redirect is refused, so there is no well-known: SRV / 8448 on the name itself.
        assert await client.resolver.resolve("attacker.test") == _no_well_known("attacker.test")
    finally:
        await client.close()
    assert public.log == [WELL_KNOWN]
    assert internal.log == []


async def test_redirect_to_plain_http_is_refused(
    tmp_path: Path, serve: Callable[..., Awaitable[Site]]
) -> None:
    # A host the policy allows, so only the scheme can be the reason for the refusal.
    plain = await serve(PUBLIC_IP, _delegate("downgraded.example:1"), tls=False)
    public = await serve(PUBLIC_IP, _redirect_to(f"http://attacker.test:{plain.port}{WELL_KNOWN}"))
    client = _client(tmp_path, public.port, {"attacker.test": PUBLIC_IP})
    try:
        assert await client.resolver.resolve("attacker.test") == _no_well_known("attacker.test")
    finally:
        await client.close()
    assert plain.log == []


@pytest.mark.parametrize("hops", [1, MAX_WELL_KNOWN_REDIRECTS])
async def test_allowed_redirect_chain_within_the_bound(
    tmp_path: Path, serve: Callable[..., Awaitable[Site]], hops: int
) -> None:
    async def chain(request: web.Request) -> web.StreamResponse:
        step = 0 if request.path == WELL_KNOWN else int(request.path.rsplit("/", 1)[1])
        if step < hops:
            raise web.HTTPFound(f"/hop/{step + 1}")
        return web.json_response({"m.server": "delegated.example:4321"})

    public = await serve(PUBLIC_IP, chain)
    client = _client(tmp_path, public.port, {"attacker.test": PUBLIC_IP})
    try:
        assert await client.resolver.resolve("attacker.test") == [
            ResolvedServer("delegated.example", 4321, "delegated.example:4321", "delegated.example")
        ]
    finally:
        await client.close()
    assert len(public.log) == hops + 1


async def test_redirect_chain_over_the_bound_is_abandoned(
    tmp_path: Path, serve: Callable[..., Awaitable[Site]]
) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        step = 0 if request.path == WELL_KNOWN else int(request.path.rsplit("/", 1)[1])
        raise web.HTTPFound(f"/hop/{step + 1}")

    public = await serve(PUBLIC_IP, endless)
    client = _client(tmp_path, public.port, {"attacker.test": PUBLIC_IP})
    try:
        assert await client.resolver.resolve("attacker.test") == _no_well_known("attacker.test")
    finally:
        await client.close()
    assert len(public.log) == MAX_WELL_KNOWN_REDIRECTS + 1


@pytest.mark.parametrize("delegated", ["internal.test:{port}", "127.0.0.1:{port}"])
async def test_well_known_delegation_to_a_blacklisted_address_is_never_connected(
    tmp_path: Path, serve: Callable[..., Awaitable[Site]], delegated: str
) -> None:
    internal = await serve(INTERNAL_IP, _delegate("unused.example:1"))
    public = await serve(PUBLIC_IP, _delegate(delegated.format(port=internal.port)))
    client = _client(
        tmp_path, public.port, {"attacker.test": PUBLIC_IP, "internal.test": INTERNAL_IP}
    )
    try:
        with pytest.raises(FederationUnreachable):
            await client.get_json("attacker.test", "/_matrix/federation/v1/version")
        with pytest.raises(FederationUnreachable):
            await client.get_server_keys("attacker.test")
    finally:
        await client.close()
    assert internal.log == []


async def test_srv_target_resolving_to_a_blacklisted_address_is_never_connected(
    tmp_path: Path, serve: Callable[..., Awaitable[Site]]
) -> None:
    internal = await serve(INTERNAL_IP, _delegate("unused.example:1"))
    config = make_config(tmp_path, federation_verify_certificates=False, **POLICY).federation

    async def srv_lookup(name: str) -> list[SrvRecord]:
        if name == "_matrix-fed._tcp.srv.test":
            return [SrvRecord(1, 1, internal.port, "internal.test")]
        return []

    client = FederationClient(
        "us.example",
        generate_signing_key("k"),
        config,
        srv_lookup=srv_lookup,
        well_known_port=internal.port,
        dns_resolver=FakeDns({"internal.test": INTERNAL_IP}),
    )
    try:
        with pytest.raises(FederationUnreachable):
            await client.get_json("srv.test", "/_matrix/federation/v1/version")
    finally:
        await client.close()
    assert internal.log == []


async def test_direct_request_to_a_blacklisted_address_is_never_connected(
    tmp_path: Path, serve: Callable[..., Awaitable[Site]]
) -> None:
    internal = await serve(INTERNAL_IP, _delegate("unused.example:1"))
    client = _client(tmp_path, 1, {"internal.test": INTERNAL_IP})
    try:
        with pytest.raises(FederationUnreachable):
            await client.get_json(f"internal.test:{internal.port}", "/x")
        with pytest.raises(FederationUnreachable):
            await client.get_json(f"{INTERNAL_IP}:{internal.port}", "/x")
    finally:
        await client.close()
    assert internal.log == []


@pytest.mark.parametrize(
    ("blacklist", "whitelist", "address", "allowed"),
    [
        (["127.0.0.0/8"], [], "127.0.0.1", False),
        (["127.0.0.0/8"], [], "::ffff:127.0.0.1", False),  # IPv4-mapped reaches 127.0.0.1
        (["127.0.0.0/8"], [], "8.8.8.8", True),
        (["127.0.0.0/8"], [], "0.0.0.0", False),  # always blocked, as in Synapse
        (["127.0.0.0/8"], [], "::", False),
        ([], [], "0.0.0.0", False),
        (["127.0.0.0/8"], ["127.0.0.2/32"], "127.0.0.2", True),
        (["127.0.0.0/8"], ["127.0.0.2/32"], "127.0.0.3", False),
        (None, [], "10.1.2.3", False),  # the default blacklist
        (None, [], "::1", False),
        (None, [], "fe80::1", False),
        (None, [], "2001:4860::8888", True),
    ],
)
def test_ip_policy_table(
    tmp_path: Path, blacklist: list[str] | None, whitelist: list[str], address: str, allowed: bool
) -> None:
    import ipaddress

    settings: dict[str, object] = {"ip_range_whitelist": whitelist}
    if blacklist is not None:
        settings["ip_range_blacklist"] = blacklist
    config = make_config(tmp_path, **settings).federation
    assert config.is_ip_allowed(ipaddress.ip_address(address)) is allowed
