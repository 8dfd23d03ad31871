"""Other servers' signing keys: fetch, cache, and verify signed JSON and events with them.

Keys are fetched **directly** from the origin (``GET /_matrix/key/v2/server``); we never ask a
notary (``trusted_key_servers`` is not supported), so trusting a key means trusting TLS to that
server plus its self-signature. A fetched response must name the server we asked and be signed
by at least one of the keys it lists (every such signature must verify). Keys are stored in the
``server_keys`` table (``store.keys``) with ``valid_until_ts = min(valid_until_ts, fetched + 7 d)``
as the spec advises; ``old_verify_keys`` are stored with their ``expired_ts`` as validity.

A key is refetched when a signature names a key we do not have, or one whose validity ends
before the time it must be valid at; at most once per :data:`REFETCH_INTERVAL_MS` per server,
so a peer sending garbage key IDs cannot make us hammer it (or anyone). Concurrent lookups for
one server share one fetch. Our own keys (the signing key and ``old_signing_keys``) never go
over the network.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

from nacl.signing import SigningKey, VerifyKey
from signedjson.key import decode_verify_key_bytes

from homeserver.bounded_cache import BoundedTtlCache
from homeserver.clock import WallClock
from homeserver.config.keys import OldVerifyKey
from homeserver.crypto.base64 import decode_base64
from homeserver.crypto.signing import SignatureError, get_verify_key, key_id, verify_json
from homeserver.events.event import Event
from homeserver.events.redaction import prune_event_dict
from homeserver.storage.keys import ServerKey
from homeserver.types import domain_of

logger = logging.getLogger(__name__)

#: The spec: treat a key as valid for at most 7 days after fetching it, whatever it claims.
MAX_KEY_LIFETIME_MS = 7 * 24 * 3600 * 1000
#: Do not refetch one server's keys more often than this when a key is missing or stale.
REFETCH_INTERVAL_MS = 30 * 1000
#: Current and old keys one server may list in its key response.
MAX_KEYS_PER_SERVER = 100
#: Our own current key never expires for our own purposes.
_FOREVER = 2**63 - 1


class SignatureVerifyError(Exception):
    """The object or event does not carry a valid signature of the required server(s)."""


class KeyStore(Protocol):
    async def store_server_keys(self, keys: Sequence[ServerKey]) -> None: ...

    async def get_server_keys(
        self, server_name: str, key_ids: Collection[str] | None = None
    ) -> dict[str, ServerKey]: ...


class KeyFetcher(Protocol):
    async def get_server_keys(self, destination: str) -> dict[str, Any]: ...


def parse_key_response(
    server_name: str, response: Any, fetched_ts: int
) -> tuple[list[ServerKey], dict[str, Any]]:
    """Validate a ``/_matrix/key/v2/server`` answer from ``server_name`` and return the keys to
    store and the response itself. Raises SignatureVerifyError if it is malformed, names
    another server, or is not self-signed."""
    if not isinstance(response, dict):
        raise SignatureVerifyError("key response is not an object")
    if response.get("server_name") != server_name:
        raise SignatureVerifyError(f"key response names {response.get('server_name')!r}")
    valid_until = response.get("valid_until_ts")
    if not isinstance(valid_until, int) or isinstance(valid_until, bool):
        raise SignatureVerifyError("key response has no integer valid_until_ts")
    current = _decode_keys(response.get("verify_keys"))
    if not current:
        raise SignatureVerifyError("key response has no ed25519 verify_keys")
    listed = [response.get("verify_keys"), response.get("old_verify_keys")]
    if sum(len(section) for section in listed if isinstance(section, dict)) > MAX_KEYS_PER_SERVER:
        # Each key would be a stored row and a cache entry; no real server has this many.
        raise SignatureVerifyError(f"key response lists too many keys (> {MAX_KEYS_PER_SERVER})")
    signatures = response.get("signatures")
    own = signatures.get(server_name) if isinstance(signatures, dict) else None
    checked = 0
    for signing_key_id in own if isinstance(own, dict) else {}:
        verify_key = current.get(signing_key_id)
        if verify_key is None:
            continue  # signed with a key it does not list: ignore that signature
        try:
            verify_json(response, server_name, signing_key_id, verify_key)
        except SignatureError as e:
            raise SignatureVerifyError(f"key response self-signature invalid: {e}") from None
        checked += 1
    if not checked:
        raise SignatureVerifyError("key response is not signed by its own keys")
    until = min(valid_until, fetched_ts + MAX_KEY_LIFETIME_MS)
    keys = [
        ServerKey(server_name, kid, bytes(vk), until, fetched_ts) for kid, vk in current.items()
    ]
    for kid, (vk, expired_ts) in _decode_old_keys(response.get("old_verify_keys")).items():
        if kid not in current:
            keys.append(ServerKey(server_name, kid, bytes(vk), expired_ts, fetched_ts))
    return keys, response


def _decode_key(kid: str, entry: Any) -> VerifyKey | None:
    if not kid.startswith("ed25519:") or not isinstance(entry, dict):
        return None
    encoded = entry.get("key")
    if not isinstance(encoded, str):
        return None
    try:
        raw = decode_base64(encoded)
    except ValueError:
        return None
    if len(raw) != 32:
        return None
    return decode_verify_key_bytes(kid, raw)


def _decode_keys(section: Any) -> dict[str, VerifyKey]:
    if not isinstance(section, dict):
        return {}
    keys = {str(kid): _decode_key(str(kid), entry) for kid, entry in section.items()}
    return {kid: key for kid, key in keys.items() if key is not None}


def _decode_old_keys(section: Any) -> dict[str, tuple[VerifyKey, int]]:
    if not isinstance(section, dict):
        return {}
    old: dict[str, tuple[VerifyKey, int]] = {}
    for kid, entry in section.items():
        key = _decode_key(str(kid), entry)
        expired = entry.get("expired_ts") if isinstance(entry, dict) else None
        if key is not None and isinstance(expired, int) and not isinstance(expired, bool):
            old[str(kid)] = (key, expired)
    return old


#: In-memory caches keyed by server name (every name a peer or an unauthenticated caller
#: makes us look up) hold at most this many servers each...
KEY_CACHE_SERVERS = 10_000
#: ...and forget an entry after this long (keys are then read from the store again, a notary
#: answer fetched again).
KEY_CACHE_TTL_MS = 3600 * 1000
#: Outbound key fetches running at once; more wait their turn. A notary request or a burst of
#: requests from unknown origins can ask for many servers, each costing connections and up to
#: the client timeout.
MAX_CONCURRENT_KEY_FETCHES = 10

#: Called before the keyring starts a key fetch on someone's behalf; raises to refuse it
#: (e.g. the caller's per-address rate limit).
FetchPermit = Callable[[], Awaitable[None]]


def _usable(key: ServerKey, valid_at_ts: int | None) -> bool:
    return valid_at_ts is None or key.valid_until_ts >= valid_at_ts


class Keyring:
    def __init__(
        self,
        store: KeyStore,
        client: KeyFetcher,
        clock: WallClock,
        server_name: str,
        signing_key: SigningKey,
        old_signing_keys: Sequence[OldVerifyKey] = (),
        *,
        max_concurrent_fetches: int = MAX_CONCURRENT_KEY_FETCHES,
        cache_size: int = KEY_CACHE_SERVERS,
        cache_ttl_ms: int = KEY_CACHE_TTL_MS,
    ) -> None:
        self._store = store
        self._client = client
        self._clock = clock
        self._server_name = server_name
        self._local: dict[str, tuple[VerifyKey, int]] = {
            key_id(signing_key): (get_verify_key(signing_key), _FOREVER)
        }
        for old in old_signing_keys:
            verify_key = decode_verify_key_bytes(old.key_id, decode_base64(old.key))
            self._local.setdefault(old.key_id, (verify_key, old.expired_ts))
        #: one task per server being fetched; bounded by what may start a fetch (the refetch
        #: interval per server, callers' rate limits), each entry gone when its fetch ends.
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._fetch_slots = asyncio.Semaphore(max_concurrent_fetches)
        #: how many fetches have ended, so a lookup can tell one ended while it read the table.
        self._fetches_ended = 0
        #: when each server's keys were last fetched; only needed for the refetch interval.
        self._last_fetch_ms: BoundedTtlCache[str, int] = BoundedTtlCache(
            cache_size, REFETCH_INTERVAL_MS, clock
        )
        #: The last self-signed response per server, for the notary endpoints. Only an
        #: optimisation: lost on restart, then fetched again.
        self._responses: BoundedTtlCache[str, dict[str, Any]] = BoundedTtlCache(
            cache_size, cache_ttl_ms, clock
        )
        #: keys read from the store, by server: every received PDU needs its sender's key, and
        #: stored keys only ever gain validity, so a hit never needs the database.
        self._key_cache: BoundedTtlCache[str, dict[str, tuple[VerifyKey, ServerKey]]] = (
            BoundedTtlCache(cache_size, cache_ttl_ms, clock)
        )

    @property
    def pending_fetches(self) -> int:
        """Key fetches asked for and not finished (running or waiting for a slot)."""
        return len(self._inflight)

    # --- keys ---------------------------------------------------------------------------------

    async def get_verify_keys(
        self,
        server_name: str,
        key_ids: Collection[str],
        *,
        valid_at_ts: int | None = None,
        permit: FetchPermit | None = None,
    ) -> dict[str, VerifyKey]:
        """The keys among ``key_ids`` that ``server_name`` owns and that are valid at
        ``valid_at_ts`` (None: any validity), fetching them if needed (``permit`` is asked
        first, and may raise). Keys we cannot get are simply absent."""
        wanted = set(key_ids)
        if server_name == self._server_name:
            return {
                kid: vk
                for kid, (vk, until) in self._local.items()
                if kid in wanted and (valid_at_ts is None or until >= valid_at_ts)
            }
        fetches_before = self._fetches_ended
        found = await self._stored(server_name, wanted, valid_at_ts)
        if not wanted - found.keys():
            return found
        if self._may_fetch(server_name):
            await self._fetch_shared(server_name, permit)
        elif self._fetches_ended == fetches_before:
            return found
        # Read again after our fetch, or after one that ended while we were reading (which may
        # have stored the keys, and now keeps us from fetching for the refetch interval).
        return await self._stored(server_name, wanted, valid_at_ts)

    async def _stored(
        self, server_name: str, wanted: set[str], valid_at_ts: int | None
    ) -> dict[str, VerifyKey]:
        if not wanted:
            return {}
        cached = self._key_cache.get(server_name) or {}
        found = {
            kid: verify_key
            for kid, (verify_key, key) in cached.items()
            if kid in wanted and _usable(key, valid_at_ts)
        }
        if found.keys() == wanted:
            return found
        # A miss (or a key too short-lived): another process may have fetched a fresher copy.
        stored = await self._store.get_server_keys(server_name, wanted)
        entry = self._key_cache.get(server_name)
        if entry is None:
            entry = {}
            self._key_cache.set(server_name, entry)
        for kid, key in stored.items():
            entry[kid] = (decode_verify_key_bytes(kid, key.verify_key), key)
        return {kid: entry[kid][0] for kid, key in stored.items() if _usable(key, valid_at_ts)}

    def _may_fetch(self, server_name: str) -> bool:
        if server_name in self._inflight:
            return True  # joining a fetch costs the peer nothing
        last = self._last_fetch_ms.get(server_name)
        return last is None or self._clock() - last >= REFETCH_INTERVAL_MS

    async def _fetch_shared(self, server_name: str, permit: FetchPermit | None = None) -> None:
        task = self._inflight.get(server_name)
        if task is None and permit is not None:
            await permit()  # joining a fetch already under way costs nothing, starting one may
            task = self._inflight.get(server_name)  # one may have started meanwhile
        if task is None:
            self._last_fetch_ms.set(server_name, self._clock())
            task = asyncio.ensure_future(self._fetch(server_name))
            self._inflight[server_name] = task
            task.add_done_callback(lambda _: self._fetch_ended(server_name))
        # shield: one caller being cancelled must not cancel the fetch the others wait for.
        await asyncio.shield(task)

    def _fetch_ended(self, server_name: str) -> None:
        self._inflight.pop(server_name, None)
        self._fetches_ended += 1

    async def _fetch(self, server_name: str) -> None:
        # Imported here: the client module pulls in aiohttp's client, which the pure users of
        # this module (tests with a fake fetcher) do not need.
        from homeserver.federation.client import FederationError

        try:
            async with self._fetch_slots:
                response = await self._client.get_server_keys(server_name)
            keys, document = parse_key_response(server_name, response, self._clock())
        except (FederationError, SignatureVerifyError) as e:
            logger.warning("cannot fetch the keys of %s: %s", server_name, e)
            return
        await self._store.store_server_keys(keys)
        self._responses.set(server_name, document)

    async def key_response(
        self,
        server_name: str,
        minimum_valid_until_ts: int,
        *,
        permit: FetchPermit | None = None,
    ) -> dict | None:
        """For the notary: ``server_name``'s self-signed key response valid until at least
        ``minimum_valid_until_ts``, fetched if the one we hold is older (rate-limited); the
        last good copy if the origin cannot be reached; None if we never had one."""
        held = self._responses.get(server_name)
        if held is None or held.get("valid_until_ts", 0) < minimum_valid_until_ts:
            if self._may_fetch(server_name):
                await self._fetch_shared(server_name, permit)
            held = self._responses.get(server_name)
        return held

    # --- verification --------------------------------------------------------------------------

    async def verify_json(
        self,
        server_name: str,
        signed: Mapping[str, Any],
        *,
        valid_at_ts: int | None = None,
        permit: FetchPermit | None = None,
    ) -> None:
        """Raise SignatureVerifyError unless ``signed`` carries a valid signature of
        ``server_name`` by a key valid at ``valid_at_ts`` (None: any known key). Signatures by
        keys we cannot get are ignored; any failing signature by a key we have is fatal."""
        signatures = signed.get("signatures")
        ours = signatures.get(server_name) if isinstance(signatures, dict) else None
        if not isinstance(ours, dict):
            raise SignatureVerifyError(f"not signed by {server_name}")
        key_ids = [kid for kid in ours if isinstance(kid, str) and kid.startswith("ed25519:")]
        if not key_ids:
            raise SignatureVerifyError(f"no ed25519 signature by {server_name}")
        keys = await self.get_verify_keys(
            server_name, key_ids, valid_at_ts=valid_at_ts, permit=permit
        )
        if not keys:
            raise SignatureVerifyError(
                f"no valid key of {server_name} for {', '.join(sorted(key_ids))}"
            )
        for kid, verify_key in keys.items():
            try:
                verify_json(signed, server_name, kid, verify_key)
            except SignatureError as e:
                raise SignatureVerifyError(str(e)) from None

    async def verify_event(self, event: Event, *, check_authorising_server: bool = True) -> None:
        """The spec's signature check on a received PDU: its redacted form must be signed by the
        sender's server; in v1/v2 also by the server of the ``event_id``; for a restricted join
        also by the server of ``join_authorised_via_users_server`` (pass
        ``check_authorising_server=False`` when we are that server and are about to sign it, as
        in send_join). From v5 the keys must be valid at ``origin_server_ts``. Third-party
        invite signatures are not checked (3PID invites are not supported)."""
        version = event.room_version
        redacted = prune_event_dict(version, event.pdu)
        valid_at = event.origin_server_ts if version.enforce_key_validity else None
        for server_name in self.required_servers(event, check_authorising_server):
            await self.verify_json(server_name, redacted, valid_at_ts=valid_at)

    @staticmethod
    def required_servers(event: Event, check_authorising_server: bool = True) -> list[str]:
        sender = event.pdu.get("sender")
        if not isinstance(sender, str) or ":" not in sender:
            raise SignatureVerifyError("event has no valid sender")
        servers = [domain_of(sender)]
        version = event.room_version
        if version.event_id_domain_must_sign and ":" in event.event_id:
            servers.append(domain_of(event.event_id))
        if (
            check_authorising_server
            and version.restricted_join_rule
            and event.pdu.get("type") == "m.room.member"
            and event.content.get("membership") == "join"
        ):
            authoriser = event.content.get("join_authorised_via_users_server")
            if isinstance(authoriser, str) and ":" in authoriser:
                servers.append(domain_of(authoriser))
        return list(dict.fromkeys(servers))
