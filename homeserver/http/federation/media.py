"""``GET /_matrix/federation/v1/media/download/{mediaId}`` and ``…/thumbnail/{mediaId}``: our
own media for other servers, as the spec's ``multipart/mixed`` answer: a JSON part (an empty
object) and then the file, with its Content-Type and a safe Content-Disposition."""

from __future__ import annotations

import secrets

from aiohttp import web

from homeserver.errors import BadRequest, Codes
from homeserver.http.appkeys import MEDIA
from homeserver.http.federation.auth import authenticate_request
from homeserver.media.headers import (
    MEDIA_SECURITY_HEADERS,
    content_disposition,
    served_content_type,
)
from homeserver.media.repository import ServedFile

V1 = "/_matrix/federation/v1/media"
_CHUNK = 256 * 1024
_MAX_SIDE = 100_000


def _side(request: web.Request, name: str) -> int:
    raw = request.query.get(name)
    if raw is None:
        raise BadRequest(f"Missing query parameter {name}", Codes.MISSING_PARAM)
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or not 0 < int(raw) <= _MAX_SIDE:
        raise BadRequest(f"Query parameter {name} must be a positive integer", Codes.INVALID_PARAM)
    return int(raw)


async def _multipart(request: web.Request, served: ServedFile) -> web.StreamResponse:
    boundary = secrets.token_hex(16)
    head = (
        f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n"
        f"--{boundary}\r\nContent-Type: {served_content_type(served.media_type)}\r\n"
        f"Content-Disposition: {content_disposition(served.media_type, served.upload_name)}"
        "\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    with served.path.open("rb") as source:
        size = source.seek(0, 2)
        source.seek(0)
        response = web.StreamResponse(
            headers={
                "Content-Type": f"multipart/mixed; boundary={boundary}",
                **MEDIA_SECURITY_HEADERS,
            }
        )
        response.content_length = len(head) + size + len(tail)
        await response.prepare(request)
        await response.write(head)
        while chunk := source.read(_CHUNK):
            await response.write(chunk)
        await response.write(tail)
    await response.write_eof()
    return response


async def download(request: web.Request) -> web.StreamResponse:
    await authenticate_request(request)
    served = await request.app[MEDIA].for_federation(request.match_info["media_id"], None)
    return await _multipart(request, served)


async def thumbnail(request: web.Request) -> web.StreamResponse:
    await authenticate_request(request)
    method = request.query.get("method", "scale")
    if method not in ("crop", "scale"):
        raise BadRequest("method must be crop or scale", Codes.INVALID_PARAM)
    size = (_side(request, "width"), _side(request, "height"), method)
    served = await request.app[MEDIA].for_federation(request.match_info["media_id"], size)
    return await _multipart(request, served)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_route("GET", V1 + "/download/{media_id}", download)
    router.add_route("GET", V1 + "/thumbnail/{media_id}", thumbnail)
