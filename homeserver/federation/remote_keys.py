"""End-to-end keys of other servers' users, asked of those servers: ``POST user/keys/query``,
``POST user/keys/claim`` and ``GET user/devices/{userId}`` (spec: server-server API "End-to-End
Encryption", "Device Management").

Every answer is checked before anyone sees it: only users of the server that answered and that
we asked about are kept, and a device's keys must name that user and that device (a server must
not be able to hand out keys in another server's name, nor swap one device's keys for
another's). Signatures are left for the clients to verify, as the spec intends.

Key queries are answered from the device lists we track (``store.remote_device_lists``) when
they are known to be complete — see remote_device_cache.py — and the rest is asked of the
server; both parts make one answer.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

from homeserver.federation.client import (
    FederationClient,
    FederationError,
    FederationUnreachable,
    fed_path,
)
from homeserver.federation.remote_device_cache import RemoteDeviceListCache
from homeserver.types import domain_of, user_id_error

logger = logging.getLogger(__name__)

#: A stream_id must fit the BIGINT columns it is kept in.
MAX_STREAM_ID = 2**63 - 1
#: Device IDs longer than this cannot be indexed by PostgreSQL reliably; none are that long.
MAX_DEVICE_ID_LENGTH = 255


def _storable_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_DEVICE_ID_LENGTH and "\x00" not in value


V1 = "/_matrix/federation/v1"
CROSS_SIGNING_FIELDS = {"master_keys": "master", "self_signing_keys": "self_signing"}


def _is_user_of(user_id: Any, server: str) -> bool:
    return (
        isinstance(user_id, str)
        and user_id_error(user_id, historical=True) is None
        and domain_of(user_id) == server
    )


def valid_device_keys(keys: Any, user_id: str, device_id: str) -> bool:
    """Whether ``keys`` is a device-keys object of exactly this user's device."""
    return (
        isinstance(keys, dict)
        and keys.get("user_id") == user_id
        and keys.get("device_id") == device_id
        and isinstance(keys.get("keys"), dict)
    )


def valid_cross_signing_key(key: Any, user_id: str, usage: str) -> bool:
    """Whether ``key`` is a cross-signing key of ``user_id`` for ``usage`` with one public key."""
    return (
        isinstance(key, dict)
        and key.get("user_id") == user_id
        and isinstance(key.get("usage"), list)
        and usage in key["usage"]
        and isinstance(key.get("keys"), dict)
        and len(key["keys"]) == 1
    )


def _object(answer: Any, server: str, what: str) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise FederationUnreachable(f"{server} answered {what} with something not an object")
    return answer


class RemoteKeys:
    """Outbound key queries (``hs.remote_keys``); failures raise FederationError subclasses."""

    def __init__(
        self, *, client: FederationClient, device_lists: RemoteDeviceListCache | None = None
    ) -> None:
        self.client = client
        #: answers from cached device lists; None: every query goes to the server.
        self.device_lists = device_lists

    async def query(
        self, server: str, device_keys: Mapping[str, Collection[str]], timeout_s: float
    ) -> dict[str, Any]:
        """``{device_keys, master_keys, self_signing_keys}`` of ``server``'s users in
        ``device_keys`` (user → devices, empty = all): from their cached device lists where
        those are complete, the others as that server answers them. When the cache answered
        some users but the server could not be asked about the rest, the answer also has
        ``failure`` ({"status", "message"}) instead of raising."""
        asked = {u: list(d) for u, d in device_keys.items() if _is_user_of(u, server)}
        if not asked:
            return {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}}
        if self.device_lists is None:
            return await self._query_server(server, asked, timeout_s)
        cached = await self.device_lists.answer(asked, timeout_s)
        result = cached.answer
        if not cached.remaining:
            return result
        try:
            if cached.unreachable is not None:
                raise cached.unreachable
            answer = await self._query_server(server, cached.remaining, timeout_s)
        except FederationError as e:
            if not result["device_keys"]:
                raise
            logger.info("keys of %d users of %s not answered: %s", len(cached.remaining), server, e)
            result["failure"] = {"status": 503, "message": str(e) or type(e).__name__}
            return result
        for field in ("device_keys", "master_keys", "self_signing_keys"):
            result[field].update(answer[field])
        return result

    async def _query_server(
        self, server: str, asked: dict[str, list[str]], timeout_s: float
    ) -> dict[str, Any]:
        """``POST user/keys/query`` for ``asked`` (``server``'s users), answer checked."""
        result: dict[str, Any] = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}}
        answer = _object(
            await self.client.post_json(
                server, V1 + "/user/keys/query", {"device_keys": asked}, timeout=timeout_s
            ),
            server,
            "user/keys/query",
        )
        devices_by_user = answer.get("device_keys")
        if isinstance(devices_by_user, dict):
            for user_id, devices in devices_by_user.items():
                if user_id not in asked or not isinstance(devices, dict):
                    continue
                wanted = set(asked[user_id])
                result["device_keys"][user_id] = {
                    device_id: keys
                    for device_id, keys in devices.items()
                    if (not wanted or device_id in wanted)
                    and valid_device_keys(keys, user_id, device_id)
                }
        for field, usage in CROSS_SIGNING_FIELDS.items():
            keys_by_user = answer.get(field)
            if not isinstance(keys_by_user, dict):
                continue
            for user_id, key in keys_by_user.items():
                if user_id in asked and valid_cross_signing_key(key, user_id, usage):
                    result[field][user_id] = key
        return result

    async def claim(
        self, server: str, one_time_keys: Mapping[str, Mapping[str, str]], timeout_s: float
    ) -> dict[str, Any]:
        """``{user: {device: {"alg:key_id": key}}}``: one key claimed per asked device of
        ``server``'s users (devices without keys left out)."""
        asked = {
            u: dict(devices)
            for u, devices in one_time_keys.items()
            if _is_user_of(u, server) and devices
        }
        if not asked:
            return {}
        answer = _object(
            await self.client.post_json(
                server, V1 + "/user/keys/claim", {"one_time_keys": asked}, timeout=timeout_s
            ),
            server,
            "user/keys/claim",
        )
        claimed: dict[str, Any] = {}
        by_user = answer.get("one_time_keys")
        if not isinstance(by_user, dict):
            return claimed
        for user_id, devices in by_user.items():
            if user_id not in asked or not isinstance(devices, dict):
                continue
            for device_id, keys in devices.items():
                algorithm = asked[user_id].get(device_id)
                if algorithm is None or not isinstance(keys, dict):
                    continue
                # The key claimed for the algorithm asked ("alg:key_id" → signed key object,
                # or a bare string for the old unsigned curve25519 keys).
                good = {
                    key_id: key
                    for key_id, key in keys.items()
                    if isinstance(key_id, str)
                    and key_id.startswith(algorithm + ":")
                    and isinstance(key, dict | str)
                }
                if good:
                    claimed.setdefault(user_id, {})[device_id] = good
        return claimed

    async def user_devices(self, user_id: str, timeout_s: float) -> dict[str, Any]:
        """``{stream_id, devices: {device_id: entry}, cross_signing: {key_type: key}}`` of a
        remote user from ``GET user/devices`` (entries keep ``keys`` only when they are that
        device's, and ``device_display_name`` when a string)."""
        server = domain_of(user_id)
        answer = _object(
            await self.client.get_json(
                server, fed_path(V1 + "/user/devices/{}", user_id), timeout=timeout_s
            ),
            server,
            "user/devices",
        )
        stream_id = answer.get("stream_id")
        if (
            answer.get("user_id") != user_id
            or isinstance(stream_id, bool)
            or not isinstance(stream_id, int)
            or not 0 <= stream_id <= MAX_STREAM_ID
        ):
            raise FederationUnreachable(f"{server} answered user/devices for {user_id} wrongly")
        devices: dict[str, dict[str, Any]] = {}
        listed = answer.get("devices")
        for entry in listed if isinstance(listed, list) else []:
            device_id = entry.get("device_id") if isinstance(entry, dict) else None
            if not _storable_id(device_id):
                continue  # nothing we could store or look up again
            devices[device_id] = device_entry(user_id, device_id, entry)
        cross_signing: dict[str, dict[str, Any]] = {}
        for field, usage in (("master_key", "master"), ("self_signing_key", "self_signing")):
            key = answer.get(field)
            if valid_cross_signing_key(key, user_id, usage):
                cross_signing[usage] = key
        return {"stream_id": stream_id, "devices": devices, "cross_signing": cross_signing}


def device_entry(user_id: str, device_id: str, source: Mapping[str, Any]) -> dict[str, Any]:
    """A device-list entry ``{device_id, keys?, device_display_name?}`` built from the checked
    parts of a ``user/devices`` entry or an ``m.device_list_update`` content."""
    entry: dict[str, Any] = {"device_id": device_id}
    keys = source.get("keys")
    if valid_device_keys(keys, user_id, device_id):
        entry["keys"] = keys
    elif keys is not None:
        logger.info("dropping keys of %s %s that name another device", user_id, device_id)
    name = source.get("device_display_name")
    if isinstance(name, str):
        entry["device_display_name"] = name
    return entry
