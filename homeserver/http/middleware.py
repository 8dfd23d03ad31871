"""Middleware every listener runs: CORS for browser clients, and errors as Matrix JSON."""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web
from aiohttp.typedefs import Handler

from homeserver.errors import Codes, MatrixError

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


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn whatever a handler raises into a ``{errcode, error}`` body. A bug becomes a bare 500:
    its details go to the log, never to the client."""
    try:
        return await handler(request)
    except MatrixError as e:
        return error_response(e.status, e.to_json())
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
