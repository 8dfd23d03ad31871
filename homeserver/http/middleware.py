"""Middleware every listener runs: CORS for browser clients, and errors as Matrix JSON."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from http import HTTPStatus
from urllib.parse import quote, unquote_to_bytes

from aiohttp import web
from aiohttp.typedefs import Handler

from homeserver.errors import Codes, MatrixError
from homeserver.http.auth import known_requester
from homeserver.http.client_address import client_address
from homeserver.logging import context as log_context
from homeserver.logging.per_request import PerRequestLogger

logger = logging.getLogger(__name__)

# The headers Synapse sends, so browser clients (Element Web) on another origin work.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization, Date",
}

_UNRECOGNIZED = {"errcode": Codes.UNRECOGNIZED, "error": "Unrecognized request"}
_INTERNAL = {"errcode": Codes.UNKNOWN, "error": "Internal server error"}


def error_response(status: int, body: dict[str, object]) -> web.Response:
    return web.json_response(body, status=status)


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # A CORS preflight may name any path; answer it before routing (which would say 405).
    if request.method == "OPTIONS":
        return web.Response(status=HTTPStatus.NO_CONTENT, headers=CORS_HEADERS)
    try:
        response = await handler(request)
    except web.HTTPException as e:
        e.headers.update(CORS_HEADERS)
        raise
    if not response.prepared:
        response.headers.update(CORS_HEADERS)
    return response


def _refuse_bad_percent_encoding(request: web.Request) -> None:
    """A path whose percent-escapes do not decode as UTF-8 (``%ED%A0%80``, a lone surrogate)
    names nothing: aiohttp would leave those escapes undecoded in the parameter, and an event
    type or state key would be stored as the literal ``%ED%A0%80``. Refuse it instead."""
    path = request.raw_path.split("?", 1)[0]
    if "%" not in path:
        return
    try:
        unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise MatrixError(
            HTTPStatus.BAD_REQUEST, Codes.INVALID_PARAM, "The path is not valid UTF-8"
        ) from None


def _refuse_nul(request: web.Request) -> None:
    """A NUL character (``%00``) in a path parameter or query value can never be a valid ID,
    token or filter, and PostgreSQL cannot even store it in a text column: refuse it up front
    rather than let it reach a query on one engine and not the other."""
    if any("\x00" in value for value in request.match_info.values()) or any(
        "\x00" in key or "\x00" in value for key, value in request.query.items()
    ):
        raise MatrixError(
            HTTPStatus.BAD_REQUEST, Codes.INVALID_PARAM, "NUL characters are not allowed"
        )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn whatever a handler raises into a ``{errcode, error}`` body. A bug becomes a bare 500:
    its details go to the log, never to the client."""
    try:
        _refuse_bad_percent_encoding(request)
        _refuse_nul(request)
        return await handler(request)
    except MatrixError as e:
        response = error_response(e.status, e.to_json())
        retry_after_ms = e.extra.get("retry_after_ms")
        if isinstance(retry_after_ms, int) and not isinstance(retry_after_ms, bool):
            # RFC 9110 Retry-After is whole seconds; round up so a client never retries early.
            response.headers["Retry-After"] = str(max(1, math.ceil(retry_after_ms / 1000)))
        return response
    except web.HTTPNotFound:
        return error_response(HTTPStatus.NOT_FOUND, _UNRECOGNIZED)
    except web.HTTPMethodNotAllowed as e:
        response = error_response(HTTPStatus.METHOD_NOT_ALLOWED, _UNRECOGNIZED)
        if "Allow" in e.headers:
            response.headers["Allow"] = e.headers["Allow"]
        return response
    except web.HTTPException as e:
        if e.status < 400:
            raise  # redirects and the like are not errors
        too_large = e.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
        errcode = Codes.TOO_LARGE if too_large else Codes.UNKNOWN
        return error_response(e.status, {"errcode": errcode, "error": e.reason})
    except Exception:
        # The query string is left out: legacy clients put access tokens in it.
        logger.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, _INTERNAL)


#: One INFO line per request; Synapse's is ``synapse.access.http.<port>``.
access_logger = PerRequestLogger("homeserver.access")
_REDACTED_QUERY_KEYS = frozenset({"access_token"})


def _loggable_target(request: web.Request) -> str:
    """Path and query with access tokens replaced (legacy clients send them in the query)."""
    if not request.query_string:
        return request.path
    parts = []
    for key, value in request.query.items():
        shown = "<redacted>" if key in _REDACTED_QUERY_KEYS else value
        parts.append(f"{quote(key, safe='')}={quote(shown, safe='<>')}")
    return f"{request.path}?{'&'.join(parts)}"


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log method, target, status, duration, client address, requester and user agent. Never
    a token, a password or a body. Also binds the request ID and room for every log line the
    request causes (the user is bound once authenticated)."""
    start = time.monotonic()
    status = 500
    bindings = log_context.bind(
        request=log_context.new_request_id(request.method),
        room=_room_of(request),
        user=None,
    )
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away (nginx's convention, as Synapse logs it)
        raise
    finally:
        level = logging.DEBUG if request.path == "/health" else logging.INFO
        # The line's fields are not gathered for a level that is not logged (/health's DEBUG).
        if access_logger.logger.isEnabledFor(level):
            requester = known_requester(request)
            access_logger.log(
                level,
                '%s - {%s} %d %.3fsec "%s %s" "%s"',
                client_address(request),
                requester.user_id if requester is not None else None,
                status,
                time.monotonic() - start,
                request.method,
                _loggable_target(request),
                request.headers.get("User-Agent", "-"),
            )
        log_context.unbind(bindings)


def _room_of(request: web.Request) -> str | None:
    """The room a request is about, when its path names one (``{room_id}``/``{roomId}``)."""
    info = request.match_info
    room = info.get("room_id") or info.get("roomId")
    return room if room and room.startswith("!") else None
