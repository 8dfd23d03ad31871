"""``GET /pushers`` and ``POST /pushers/set``: checking a pusher body and storing it (spec
"Push notifications", with Synapse's checks and error codes where the spec is silent).

Only ``http`` pushers are offered (``email`` needs an email sender we do not have). An HTTP
pusher's ``data.url`` must be an http(s) URL whose path is ``/_matrix/push/v1/notify`` (as
Synapse insists); a URL naming an address the outbound IP policy forbids is refused at once, and
names that resolve to one are refused when delivery connects.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from homeserver.clock import WallClock
from homeserver.config.federation import FederationConfig
from homeserver.errors import BadRequest, Codes
from homeserver.storage import Store
from homeserver.storage.pushers import Pusher

NOTIFY_PATH = "/_matrix/push/v1/notify"
KINDS = frozenset({"http"})
#: Spec: app_id is at most 64 characters, pushkey at most 512 bytes.
MAX_APP_ID = 64
MAX_PUSHKEY_BYTES = 512
#: Not in the spec: caps that keep one row small (Synapse's columns are TEXT too).
MAX_TEXT = 1024
MAX_DATA_BYTES = 8192
_REQUIRED = ("kind", "app_id", "app_display_name", "device_display_name", "pushkey", "lang", "data")


def pusher_json(pusher: Pusher) -> dict[str, Any]:
    body: dict[str, Any] = {
        "pushkey": pusher.pushkey,
        "kind": pusher.kind,
        "app_id": pusher.app_id,
        "app_display_name": pusher.app_display_name,
        "device_display_name": pusher.device_display_name,
        "lang": pusher.lang,
        "data": pusher.data,
    }
    if pusher.profile_tag is not None:
        body["profile_tag"] = pusher.profile_tag
    return body


def _string(body: dict[str, Any], key: str, limit: int = MAX_TEXT) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise BadRequest(
            f"'{key}' must be a string",
            Codes.MISSING_PARAM if value is None else Codes.INVALID_PARAM,
        )
    if len(value) > limit:
        raise BadRequest(f"'{key}' is too long", Codes.INVALID_PARAM)
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL: refused alike on both engines.
        raise BadRequest(f"'{key}' must not contain NUL", Codes.INVALID_PARAM)
    return value


class PushersService:
    def __init__(self, store: Store, ip_policy: FederationConfig, clock: WallClock) -> None:
        self.store = store
        self.ip_policy = ip_policy
        self.clock = clock

    async def get_pushers(self, user_id: str) -> list[dict[str, Any]]:
        return [pusher_json(p) for p in await self.store.pushers.get_pushers(user_id)]

    async def set_pusher(self, user_id: str, body: dict[str, Any]) -> None:
        if "kind" in body and body["kind"] is None:
            app_id = _string(body, "app_id")
            pushkey = _string(body, "pushkey")
            await self.store.pushers.delete_pusher(user_id, app_id, pushkey)
            return
        missing = [key for key in _REQUIRED if key not in body]
        if missing:
            raise BadRequest(f"Missing parameters: {', '.join(missing)}", Codes.MISSING_PARAM)
        kind = _string(body, "kind")
        if kind not in KINDS:
            raise BadRequest(f"Unsupported pusher kind {kind!r}", Codes.INVALID_PARAM)
        app_id = _string(body, "app_id", MAX_APP_ID)
        pushkey = _string(body, "pushkey")
        if len(pushkey.encode()) > MAX_PUSHKEY_BYTES:
            raise BadRequest("'pushkey' is too long", Codes.INVALID_PARAM)
        if not app_id or not pushkey:
            raise BadRequest("'app_id' and 'pushkey' may not be empty", Codes.INVALID_PARAM)
        profile_tag = body.get("profile_tag")
        if profile_tag is not None and not isinstance(profile_tag, str):
            raise BadRequest("'profile_tag' must be a string", Codes.INVALID_PARAM)
        if isinstance(profile_tag, str):
            profile_tag = _string(body, "profile_tag")
        append = body.get("append", False)
        if not isinstance(append, bool):
            raise BadRequest("'append' must be a boolean", Codes.INVALID_PARAM)
        data = body["data"]
        if not isinstance(data, dict):
            raise BadRequest("'data' must be an object", Codes.INVALID_PARAM)
        if len(repr(data)) > MAX_DATA_BYTES:
            raise BadRequest("'data' is too large", Codes.INVALID_PARAM)
        self._check_url(data)
        fmt = data.get("format")
        if fmt is not None and not isinstance(fmt, str):
            raise BadRequest("'data.format' must be a string", Codes.INVALID_PARAM)
        await self.store.pushers.set_pusher(
            Pusher(
                0,
                user_id,
                kind,
                app_id,
                pushkey,
                _string(body, "app_display_name"),
                _string(body, "device_display_name"),
                profile_tag,
                _string(body, "lang"),
                data,
                self.clock(),
            ),
            append=append,
        )

    def _check_url(self, data: dict[str, Any]) -> None:
        url = data.get("url")
        if not isinstance(url, str):
            raise BadRequest("'url' required in data for HTTP pushers", Codes.MISSING_PARAM)
        if len(url) > MAX_TEXT or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
            raise BadRequest("'url' is not a valid URL", Codes.INVALID_PARAM)
        try:
            parts = urlsplit(url)
            host = parts.hostname
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise BadRequest("'url' is not a valid URL", Codes.INVALID_PARAM) from None
        if parts.scheme not in ("http", "https") or not host:
            raise BadRequest("'url' must be an http(s) URL", Codes.INVALID_PARAM)
        if parts.path != NOTIFY_PATH:
            raise BadRequest(f"'url' must have a path of '{NOTIFY_PATH}'", Codes.INVALID_PARAM)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = ipaddress.ip_address("127.0.0.1") if host.lower() == "localhost" else None
        if address is not None and not self.ip_policy.is_ip_allowed(address):
            raise BadRequest("'url' names an address pushers may not reach", Codes.INVALID_PARAM)
