"""Authenticating inbound federation requests (``Authorization: X-Matrix``).

The signature covers the request target exactly as the peer sent it — Synapse percent-encodes
``!``, ``:``, ``$`` and ``@`` in path arguments — so we verify against the raw, undecoded target
(``request.raw_path``, which includes the query), never a re-encoding of the decoded path.
"""

from __future__ import annotations

import functools
from http import HTTPStatus

from aiohttp import web

from homeserver.crypto.canonical_json import (
    MAX_REQUEST_DEPTH,
    JSONTooDeep,
    UnencodableJSON,
    parse_json,
)
from homeserver.errors import BadRequest, Codes, Forbidden, MatrixError
from homeserver.federation.keyring import SignatureVerifyError
from homeserver.federation.xmatrix import (
    XMatrixCredential,
    XMatrixParseError,
    is_x_matrix,
    parse_header,
    signing_object,
)
from homeserver.http.appkeys import CLOCK, CONFIG, FEDERATION_SENDER, KEYRING, RATELIMITERS
from homeserver.http.client_address import client_address

#: Where the verified origin is kept on the request, for handlers that want it again.
ORIGIN_KEY = web.RequestKey("federation_origin", str)


def _unauthorized(message: str) -> MatrixError:
    return MatrixError(HTTPStatus.UNAUTHORIZED, Codes.UNAUTHORIZED, message)


def _credentials(request: web.Request) -> list[XMatrixCredential]:
    headers = [h for h in request.headers.getall("Authorization", []) if is_x_matrix(h)]
    if not headers:
        raise _unauthorized("Missing Authorization headers")
    try:
        credentials = [parse_header(h) for h in headers]
    except XMatrixParseError as e:
        raise BadRequest(f"Malformed Authorization header: {e}", Codes.UNAUTHORIZED) from None
    if len({c.origin for c in credentials}) != 1:
        raise BadRequest("Authorization headers name different origins", Codes.UNAUTHORIZED)
    return credentials


async def authenticate_request(request: web.Request) -> str:
    """The origin server name of a correctly signed request to us.

    Raises MatrixError: 400 for a malformed header or body, 401 ``M_UNAUTHORIZED`` for a
    missing or bad signature, an unknown key or a ``destination`` that is not us, 403 for an
    origin outside ``federation_domain_whitelist``.
    """
    if ORIGIN_KEY in request:
        return request[ORIGIN_KEY]
    clock = request.app[CLOCK]
    config = request.app[CONFIG]
    federation_sender = request.app[FEDERATION_SENDER]
    keyring = request.app[KEYRING]
    ratelimiters = request.app[RATELIMITERS]
    server_name = config.server_name
    credentials = _credentials(request)
    origin = credentials[0].origin
    for credential in credentials:
        if credential.destination is not None and credential.destination != server_name:
            raise _unauthorized("Request is not addressed to this server")
    if not config.federation.is_domain_allowed(origin):
        raise Forbidden("Federation with this server is not allowed")

    raw = await request.read()
    content = None
    if raw:
        try:
            content = parse_json(raw, max_depth=MAX_REQUEST_DEPTH)
        except JSONTooDeep:
            raise BadRequest(
                f"JSON may not nest deeper than {MAX_REQUEST_DEPTH} levels.", Codes.BAD_JSON
            ) from None
        except (UnencodableJSON, ValueError, UnicodeDecodeError, RecursionError):
            raise BadRequest("Content not JSON.", Codes.NOT_JSON) from None

    signed = signing_object(request.method, request.raw_path, origin, server_name, content)
    signed["signatures"] = {origin: {c.key_id: c.signature for c in credentials}}
    address = client_address(request)
    try:
        # An unknown origin makes us fetch its keys; the caller's address pays for each fetch
        # (the same bucket as notary queries), so a flood of invented origins stays bounded.
        await keyring.verify_json(
            origin,
            signed,
            valid_at_ts=clock(),
            permit=functools.partial(ratelimiters.remote_key_fetches.check, address),
        )
    except SignatureVerifyError as e:
        raise _unauthorized(f"Invalid signature for server {origin}: {e}") from None
    request[ORIGIN_KEY] = origin
    # A peer that can sign requests to us is up: retry what we queued for it now rather than
    # at the end of its backoff (Synapse does the same).
    federation_sender.on_destination_reachable(origin)
    return origin
