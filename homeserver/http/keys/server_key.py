"""``GET /_matrix/key/v2/server``: this server's verify keys, signed by itself.

The deprecated ``/_matrix/key/v2/server/{keyId}`` form answers the same document (the spec says
to ignore the key ID), as Synapse does.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from nacl.signing import SigningKey

from homeserver.config import HomeserverConfig
from homeserver.crypto.base64 import encode_base64
from homeserver.crypto.signing import get_verify_key, key_id, sign_json
from homeserver.http.appkeys import CLOCK, CONFIG, SIGNING_KEY


def server_keys_document(
    config: HomeserverConfig, signing_key: SigningKey, now_ms: int
) -> dict[str, Any]:
    verify_key = get_verify_key(signing_key)
    document: dict[str, Any] = {
        "server_name": config.server_name,
        "verify_keys": {key_id(signing_key): {"key": encode_base64(bytes(verify_key))}},
        "old_verify_keys": {
            old.key_id: {"key": old.key, "expired_ts": old.expired_ts}
            for old in config.keys.old_signing_keys
        },
        "valid_until_ts": now_ms + config.keys.key_refresh_interval_ms,
    }
    return sign_json(document, config.server_name, signing_key)


async def server_key(request: web.Request) -> web.Response:
    app = request.app
    document = server_keys_document(app[CONFIG], app[SIGNING_KEY], app[CLOCK]())
    return web.json_response(document)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/_matrix/key/v2/server", server_key)
    router.add_get("/_matrix/key/v2/server/{key_id}", server_key)
