"""Reading request bodies and path parts as the spec asks: M_NOT_JSON, M_BAD_JSON, never a 500."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.crypto.canonical_json import (
    MAX_REQUEST_DEPTH,
    JSONTooDeep,
    UnencodableJSON,
    parse_json,
)
from homeserver.errors import BadRequest, Codes


async def read_json(request: web.Request) -> Any:
    """The body parsed as JSON (NaN/Infinity refused); an empty body is ``{}``."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return parse_json(raw, max_depth=MAX_REQUEST_DEPTH)
    except UnencodableJSON:
        # It is JSON, but not JSON anything can be signed or stored as.
        raise BadRequest("Strings must be valid Unicode.", Codes.BAD_JSON) from None
    except JSONTooDeep:
        raise BadRequest(
            f"JSON may not nest deeper than {MAX_REQUEST_DEPTH} levels.", Codes.BAD_JSON
        ) from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("Content not JSON.", Codes.NOT_JSON) from None


async def read_json_object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("Content must be a JSON object.", Codes.BAD_JSON)
    return body


def json_response(body: Any, status: int = 200) -> web.Response:
    from homeserver.crypto.canonical_json import canonical_json_text

    return web.Response(
        text=canonical_json_text(body), status=status, content_type="application/json"
    )
