"""Outbound federation requests: ``FederationClient``.

Every request goes over HTTPS to where server discovery (``discovery.py``) says, carries our
X-Matrix signature over the exact percent-encoded target we send, and is refused before any
connection when the destination is outside ``federation_domain_whitelist``. The IP policy
(``ip_range_blacklist`` unless ``ip_range_whitelist`` allows) lives in the connection layer:
resolved addresses are filtered, and the socket factory refuses any address it is handed, so
one check covers IP literals, SRV targets, ``.well-known`` delegations and redirect hops alike
(``.well-known`` redirects are followed by hand: https only, at most a few). Peers
answer JSON; a non-2xx answer becomes :class:`FederationHttpError`, anything that prevents an
answer (DNS, connect, TLS, timeout, policy, an oversized or non-JSON body) becomes
:class:`FederationUnreachable`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from aiohappyeyeballs import AddrInfoType, SocketFactoryType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from nacl.signing import SigningKey
from yarl import URL

from homeserver.clock import WallClock, time_ms
from homeserver.config.federation import FederationConfig
from homeserver.crypto.canonical_json import encode_canonical_json
from homeserver.federation.discovery import (
    WELL_KNOWN_MAX_BYTES,
    ResolvedServer,
    ServerResolver,
    SrvLookup,
    WellKnownResponse,
    dns_srv_lookup,
    is_ip_literal,
)
from homeserver.federation.xmatrix import authorization_header

logger = logging.getLogger(__name__)

#: Room state of a big room can be tens of MB; anything past this is a hostile or broken peer.
DEFAULT_MAX_RESPONSE_BYTES = 100 * 1024 * 1024
WELL_KNOWN_TIMEOUT_SECONDS = 10.0
#: Synapse follows .well-known redirects (Twisted's RedirectAgent, 20); a handful is plenty for
#: a CDN or an http→https hop on the same site, and each one costs a connection.
MAX_WELL_KNOWN_REDIRECTS = 5
USER_AGENT = "homeserver-federation"

Query = Mapping[str, str | Sequence[str]] | None


class FederationError(Exception):
    """Base of the errors an outbound federation request raises."""


class FederationUnreachable(FederationError):
    """No answer: DNS, connect, TLS, timeout, blocked IP, destination not whitelisted, or an
    unusable response body."""


class FederationHttpError(FederationError):
    """The peer answered with a non-2xx status."""

    def __init__(self, status: int, errcode: str | None, error: str | None, body: Any) -> None:
        super().__init__(f"{status} {errcode or ''} {error or ''}".strip())
        self.status = status
        self.errcode = errcode
        self.error = error
        self.body = body


def fed_path(template: str, *args: str) -> str:
    """Fill ``{}`` placeholders with percent-encoded arguments (every reserved character, as
    Synapse does), e.g. ``fed_path("/_matrix/federation/v1/send/{}", txn_id)``."""
    return template.format(*(quote(arg, safe="") for arg in args))


def encode_query(query: Query) -> str:
    """``a=1&b=x&b=y`` (values percent-encoded, repeated keys for sequences); "" for none."""
    if not query:
        return ""
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        if isinstance(value, str):
            pairs.append((key, value))
        else:
            pairs.extend((key, item) for item in value)
    return urlencode(pairs, quote_via=quote, safe="")


class _PolicyResolver(AbstractResolver):
    """DNS resolution that drops addresses the IP policy forbids, so no connection to them is
    ever attempted and the error says why."""

    def __init__(self, config: FederationConfig, inner: AbstractResolver | None = None) -> None:
        self._config = config
        self._inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if _address_allowed(self._config, r["host"])]
        if not allowed:
            raise OSError(f"{host} resolves only to addresses blocked by ip_range_blacklist")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def _address_allowed(config: FederationConfig, host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # not an address we can judge: refuse rather than guess
    return config.is_ip_allowed(address)


def _policy_socket_factory(config: FederationConfig) -> SocketFactoryType:
    """The last word on every outbound connection: called with the very address about to be
    connected to, whatever produced it (a resolved name, an IP literal — which aiohttp never
    hands to the resolver —, an SRV target, a delegation or a redirect)."""

    def create(addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        host = str(sockaddr[0])
        if not _address_allowed(config, host):
            raise OSError(f"connecting to {host} is blocked by ip_range_blacklist")
        return socket.socket(family=family, type=type_, proto=proto)

    return create


class FederationClient:
    """Signed JSON requests to other homeservers. The HTTP session is opened on first use and
    closed by :meth:`close`."""

    def __init__(
        self,
        server_name: str,
        signing_key: SigningKey,
        config: FederationConfig,
        *,
        clock: WallClock = time_ms,
        srv_lookup: SrvLookup = dns_srv_lookup,
        well_known_port: int = 443,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        dns_resolver: AbstractResolver | None = None,
    ) -> None:
        self._dns_resolver = dns_resolver
        self.server_name = server_name
        self._signing_key = signing_key
        self._config = config
        self._max_response_bytes = max_response_bytes
        self._well_known_port = well_known_port
        self.resolver = ServerResolver(self._fetch_well_known, srv_lookup, clock)
        self._session: aiohttp.ClientSession | None = None

    # --- public API -------------------------------------------------------------------------

    async def get_json(
        self, destination: str, path: str, query: Query = None, *, timeout: float = 60.0
    ) -> Any:
        return await self._request("GET", destination, path, query, None, timeout=timeout)

    async def put_json(
        self,
        destination: str,
        path: str,
        content: Any,
        query: Query = None,
        *,
        timeout: float = 60.0,
    ) -> Any:
        return await self._request("PUT", destination, path, query, content, timeout=timeout)

    async def post_json(
        self,
        destination: str,
        path: str,
        content: Any,
        query: Query = None,
        *,
        timeout: float = 60.0,
    ) -> Any:
        return await self._request("POST", destination, path, query, content, timeout=timeout)

    async def get_server_keys(self, destination: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """``GET /_matrix/key/v2/server`` (unsigned: the peer may not know our keys yet)."""
        body = await self._request(
            "GET", destination, "/_matrix/key/v2/server", None, None, timeout=timeout, sign=False
        )
        if not isinstance(body, dict):
            raise FederationUnreachable(f"{destination} answered keys that are not an object")
        return body

    @asynccontextmanager
    async def stream_get(
        self, destination: str, path: str, query: Query = None, *, timeout: float = 60.0
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A signed GET whose 2xx or 3xx answer is handed over unread, for bodies that are not
        JSON (media); the caller reads (and caps) the body. ``timeout`` bounds each read, not
        the whole transfer. A 4xx/5xx answer raises :class:`FederationHttpError`."""
        if not self._config.is_domain_allowed(destination):
            raise FederationUnreachable(f"{destination} is not in federation_domain_whitelist")
        encoded_query = encode_query(query)
        uri = path + ("?" + encoded_query if encoded_query else "")
        headers = {
            "Authorization": authorization_header(
                self._signing_key, "GET", uri, self.server_name, destination, None
            )
        }
        try:
            candidates = await self.resolver.resolve(destination)
        except ValueError as e:
            raise FederationUnreachable(str(e)) from None
        if not candidates:
            raise FederationUnreachable(f"{destination} offers no federation service (SRV '.')")
        response: aiohttp.ClientResponse | None = None
        last_error: Exception | None = None
        for candidate in candidates:
            try:
                self._check_ip_literal(candidate.target)
                host = f"[{candidate.target}]" if ":" in candidate.target else candidate.target
                url = URL(f"https://{host}:{candidate.port}{uri}", encoded=True)
                response = await self._get_session().request(
                    "GET",
                    url,
                    headers={**headers, "Host": candidate.host_header},
                    server_hostname=candidate.tls_server_name,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(sock_connect=timeout, sock_read=timeout),
                )
                break
            # ValueError: a name IDNA cannot encode (UnicodeError), such as "..".
            except (aiohttp.ClientError, OSError, TimeoutError, ssl.SSLError, ValueError) as e:
                last_error = FederationUnreachable(f"{type(e).__name__}: {e}")
            except FederationUnreachable as e:
                last_error = e
        if response is None:
            raise FederationUnreachable(f"cannot reach {destination}: {last_error}")
        async with self._handed_over(response) as answer:
            yield answer

    @asynccontextmanager
    async def stream_url(
        self, url: str, *, timeout: float = 60.0
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """An unsigned GET of a URL a peer redirected us to (its media on a CDN): http(s)
        only, no further redirects, the same IP policy as every request."""
        try:
            target = URL(url)
        except ValueError:
            raise FederationUnreachable("refusing a redirect to a malformed URL") from None
        if target.scheme not in ("https", "http") or not target.host:
            raise FederationUnreachable("refusing a redirect to a URL that is not http(s)")
        self._check_ip_literal(target.host)
        try:
            response = await self._get_session().get(
                target,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(sock_connect=timeout, sock_read=timeout),
            )
        except (aiohttp.ClientError, OSError, TimeoutError, ssl.SSLError, ValueError) as e:
            raise FederationUnreachable(f"{type(e).__name__}: {e}") from None
        async with self._handed_over(response) as answer:
            yield answer

    @asynccontextmanager
    async def _handed_over(
        self, response: aiohttp.ClientResponse
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        try:
            if response.status >= 400:
                raw = await _read_capped(response, 64 * 1024)
                _interpret(response.status, raw)
            yield response
        except (aiohttp.ClientError, OSError, TimeoutError, ssl.SSLError, ValueError) as e:
            raise FederationUnreachable(f"{type(e).__name__}: {e}") from None
        finally:
            response.release()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- internals ----------------------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            verify = self._config.federation_verify_certificates
            connector = aiohttp.TCPConnector(
                ssl=ssl.create_default_context() if verify else False,
                resolver=_PolicyResolver(self._config, self._dns_resolver),
                socket_factory=_policy_socket_factory(self._config),
                # aiohttp's DNS cache is a table keyed by every name we are made to resolve,
                # never trimmed; the system resolver caches anyway.
                use_dns_cache=False,
                limit_per_host=20,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": USER_AGENT},
                # Cookies have no meaning between servers; never send one peer's to another.
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
            )
        return self._session

    def _check_ip_literal(self, target: str) -> None:
        if is_ip_literal(target) and not self._config.is_ip_allowed(ipaddress.ip_address(target)):
            raise FederationUnreachable(f"{target} is blocked by ip_range_blacklist")

    async def _request(
        self,
        method: str,
        destination: str,
        path: str,
        query: Query,
        content: Any,
        *,
        timeout: float,
        sign: bool = True,
    ) -> Any:
        if not self._config.is_domain_allowed(destination):
            raise FederationUnreachable(f"{destination} is not in federation_domain_whitelist")
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        encoded_query = encode_query(query)
        uri = path + ("?" + encoded_query if encoded_query else "")
        headers: dict[str, str] = {}
        body: bytes | None = None
        if method in ("PUT", "POST"):
            content = {} if content is None else content
            body = encode_canonical_json(content)
            headers["Content-Type"] = "application/json"
        if sign:
            headers["Authorization"] = authorization_header(
                self._signing_key, method, uri, self.server_name, destination, content
            )
        try:
            candidates = await self.resolver.resolve(destination)
        except ValueError as e:
            raise FederationUnreachable(str(e)) from None
        if not candidates:
            raise FederationUnreachable(f"{destination} offers no federation service (SRV '.')")
        last_error: Exception | None = None
        for candidate in candidates:
            try:
                return await self._send_once(candidate, method, uri, headers, body, timeout)
            except FederationHttpError:
                raise
            except FederationUnreachable as e:
                last_error = e
                logger.info("federation %s %s to %s failed: %s", method, path, destination, e)
        raise FederationUnreachable(f"cannot reach {destination}: {last_error}")

    async def _send_once(
        self,
        candidate: ResolvedServer,
        method: str,
        uri: str,
        headers: dict[str, str],
        body: bytes | None,
        timeout: float,
    ) -> Any:
        self._check_ip_literal(candidate.target)
        host = f"[{candidate.target}]" if ":" in candidate.target else candidate.target
        try:
            url = URL(f"https://{host}:{candidate.port}{uri}", encoded=True)
            async with self._get_session().request(
                method,
                url,
                data=body,
                headers={**headers, "Host": candidate.host_header},
                server_hostname=candidate.tls_server_name,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                raw = await _read_capped(response, self._max_response_bytes)
                status = response.status
        # ValueError: a name IDNA cannot encode (UnicodeError), such as "..".
        except (aiohttp.ClientError, OSError, TimeoutError, ssl.SSLError, ValueError) as e:
            raise FederationUnreachable(f"{type(e).__name__}: {e}") from None
        return _interpret(status, raw)

    async def _fetch_well_known(self, hostname: str) -> WellKnownResponse:
        if is_ip_literal(hostname):
            self._check_ip_literal(hostname)
        port = "" if self._well_known_port == 443 else f":{self._well_known_port}"
        url = URL(f"https://{hostname}{port}/.well-known/matrix/server", encoded=True)
        try:
            async with asyncio.timeout(WELL_KNOWN_TIMEOUT_SECONDS):
                return await self._get_following_redirects(url)
        except (aiohttp.ClientError, FederationUnreachable, ssl.SSLError, ValueError) as e:
            raise OSError(str(e)) from None

    async def _get_following_redirects(self, url: URL) -> WellKnownResponse:
        """GET ``url``, following at most MAX_WELL_KNOWN_REDIRECTS redirects by hand so that
        each hop is checked: https only (no downgrade to a sniffable or spoofable http). Every
        hop's address goes through the connector's IP policy like any other request."""
        for _ in range(MAX_WELL_KNOWN_REDIRECTS + 1):
            async with self._get_session().get(url, allow_redirects=False) as response:
                location = response.headers.get("Location")
                if response.status not in _REDIRECT_STATUSES or location is None:
                    raw = await _read_capped(response, WELL_KNOWN_MAX_BYTES)
                    return WellKnownResponse(
                        response.status, raw, response.headers.get("Cache-Control")
                    )
            url = url.join(URL(location))
            if url.scheme != "https" or not url.host:
                raise FederationUnreachable(f"refusing a redirect to a non-https URL: {url}")
        raise FederationUnreachable(f"more than {MAX_WELL_KNOWN_REDIRECTS} redirects")


_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    declared = response.content_length
    if declared is not None and declared > limit:
        raise FederationUnreachable(f"response of {declared} bytes is over the {limit} limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise FederationUnreachable(f"response is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _interpret(status: int, raw: bytes) -> Any:
    try:
        parsed: Any = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        parsed = None
        if 200 <= status < 300:
            raise FederationUnreachable(f"{status} response is not JSON") from None
    if 200 <= status < 300:
        return parsed
    errcode = error = None
    if isinstance(parsed, dict):
        errcode = parsed.get("errcode") if isinstance(parsed.get("errcode"), str) else None
        error = parsed.get("error") if isinstance(parsed.get("error"), str) else None
    raise FederationHttpError(status, errcode, error, parsed)


__all__ = [
    "FederationClient",
    "FederationError",
    "FederationHttpError",
    "FederationUnreachable",
    "encode_query",
    "fed_path",
]
