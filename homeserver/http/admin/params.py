"""Query parameters of the admin API, parsed and refused as Synapse's ``parse_*`` helpers do
(400 ``M_INVALID_PARAM`` naming the parameter)."""

from __future__ import annotations

from collections.abc import Collection

from aiohttp import web

from homeserver.errors import BadRequest, Codes

#: the largest page anyone may ask for (Synapse has none; a bound keeps one request cheap).
MAX_LIMIT = 10_000


def int_param(request: web.Request, name: str, default: int, *, maximum: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.lstrip("-").isdigit() or len(raw) > 18:
        raise BadRequest(f"Query parameter {name} must be an integer", Codes.INVALID_PARAM)
    value = int(raw)
    if value < 0:
        raise BadRequest(f"Query parameter {name} must be a positive integer.", Codes.INVALID_PARAM)
    if maximum is not None and value > maximum:
        raise BadRequest(f"Query parameter {name} must be at most {maximum}.", Codes.INVALID_PARAM)
    return value


def paging(request: web.Request) -> tuple[int, int]:
    """``from`` (default 0) and ``limit`` (default 100, as Synapse)."""
    return int_param(request, "from", 0), int_param(request, "limit", 100, maximum=MAX_LIMIT)


def bool_param(request: web.Request, name: str, default: bool | None = None) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw not in ("true", "false"):
        raise BadRequest(
            f"Boolean query parameter {name!r} must be one of ['true', 'false']",
            Codes.INVALID_PARAM,
        )
    return raw == "true"


def string_param(
    request: web.Request,
    name: str,
    default: str | None = None,
    *,
    allowed: Collection[str] | None = None,
) -> str | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    if "\x00" in raw:
        raise BadRequest(f"Query parameter {name!r} must not contain NUL", Codes.INVALID_PARAM)
    if allowed is not None and raw not in allowed:
        choices = ", ".join(allowed)
        raise BadRequest(
            f"Query parameter {name!r} must be one of [{choices}]", Codes.INVALID_PARAM
        )
    return raw


def backwards(request: web.Request) -> bool:
    """``dir``: ``f`` (default) or ``b``."""
    return string_param(request, "dir", "f", allowed=("f", "b")) == "b"
