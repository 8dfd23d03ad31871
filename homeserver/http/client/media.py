"""The client media API.

* authenticated (``/_matrix/client/v1/media``): ``config``, ``download/{serverName}/{mediaId}
  [/{fileName}]``, ``thumbnail/{serverName}/{mediaId}``;
* ``/_matrix/media/v3`` (and ``r0``): ``upload`` (POST), ``upload/{serverName}/{mediaId}``
  (PUT), ``config``, and the legacy unauthenticated ``download`` and ``thumbnail`` (which do not
  serve media uploaded under ``enable_authenticated_media``);
* ``POST /_matrix/media/v1/create``.

Upload bodies are streamed to disk (never read whole; refused past ``max_upload_size``, before
reading anything when Content-Length says so). Every media answer carries the headers of
homeserver/media/headers.py.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import BadRequest, Codes
from homeserver.http.appkeys import MEDIA
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response
from homeserver.media.headers import media_headers
from homeserver.media.repository import ServedFile, UploadRequest

LEGACY_V1 = "/_matrix/media/v1"
CLIENT_V1 = "/_matrix/client/v1/media"
MEDIA_PREFIXES = ("/_matrix/media/v3", "/_matrix/media/r0")
_CHUNK = 64 * 1024
_MAX_SIDE = 100_000


def _int_param(request: web.Request, name: str, default: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise BadRequest(f"Missing query parameter {name}", Codes.MISSING_PARAM)
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise BadRequest(f"Query parameter {name} must be a positive integer", Codes.INVALID_PARAM)
    return int(raw)


def _bool_param(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw not in ("true", "false"):
        raise BadRequest(f"Query parameter {name} must be true or false", Codes.INVALID_PARAM)
    return raw == "true"


def _upload_request(request: web.Request) -> UploadRequest:
    filename = request.query.get("filename")
    return UploadRequest(
        chunks=request.content.iter_chunked(_CHUNK),
        declared_length=request.content_length,
        media_type=request.headers.get("Content-Type"),
        filename=filename,
    )


def _file_response(served: ServedFile, filename: str | None = None) -> web.FileResponse:
    headers = media_headers(served.media_type, filename or served.upload_name)
    # Media never changes under its ID: let clients and proxies keep it.
    headers["Cache-Control"] = "public,max-age=86400,s-maxage=86400"
    return web.FileResponse(served.path, headers=headers)


# --- uploads ----------------------------------------------------------------------------------


async def upload(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    uri = await request.app[MEDIA].upload(requester.user_id, _upload_request(request))
    return json_response({"content_uri": uri})


async def upload_to(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    await request.app[MEDIA].upload_to(
        requester.user_id,
        request.match_info["server_name"],
        request.match_info["media_id"],
        _upload_request(request),
    )
    return json_response({})


async def create(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    return json_response(await request.app[MEDIA].create(requester.user_id))


async def config(request: web.Request) -> web.Response:
    await get_requester(request)
    return json_response(request.app[MEDIA].upload_config())


# --- downloads --------------------------------------------------------------------------------


async def _download(request: web.Request, *, authenticated: bool) -> web.FileResponse:
    served = await request.app[MEDIA].download(
        request.match_info["server_name"],
        request.match_info["media_id"],
        authenticated=authenticated,
        allow_remote=_bool_param(request, "allow_remote", True),
        wait_ms=_int_param(request, "timeout_ms", 20_000),
    )
    return _file_response(served, request.match_info.get("file_name") or None)


async def _thumbnail(request: web.Request, *, authenticated: bool) -> web.FileResponse:
    method = request.query.get("method", "scale")
    if method not in ("crop", "scale"):
        raise BadRequest("method must be crop or scale", Codes.INVALID_PARAM)
    width, height = _int_param(request, "width"), _int_param(request, "height")
    if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
        raise BadRequest("width and height must be positive", Codes.INVALID_PARAM)
    served = await request.app[MEDIA].thumbnail(
        request.match_info["server_name"],
        request.match_info["media_id"],
        width,
        height,
        method,
        authenticated=authenticated,
        allow_remote=_bool_param(request, "allow_remote", True),
        wait_ms=_int_param(request, "timeout_ms", 20_000),
    )
    return _file_response(served)


async def download_authenticated(request: web.Request) -> web.FileResponse:
    await get_requester(request)
    return await _download(request, authenticated=True)


async def thumbnail_authenticated(request: web.Request) -> web.FileResponse:
    await get_requester(request)
    return await _thumbnail(request, authenticated=True)


async def download_legacy(request: web.Request) -> web.FileResponse:
    return await _download(request, authenticated=False)


async def thumbnail_legacy(request: web.Request) -> web.FileResponse:
    return await _thumbnail(request, authenticated=False)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_route("GET", CLIENT_V1 + "/config", config)
    router.add_route(
        "GET", CLIENT_V1 + "/download/{server_name}/{media_id}", download_authenticated
    )
    router.add_route(
        "GET",
        CLIENT_V1 + "/download/{server_name}/{media_id}/{file_name}",
        download_authenticated,
    )
    # An empty file name (a trailing slash), as Ketesa asks and Synapse's pattern allows.
    router.add_route(
        "GET", CLIENT_V1 + "/download/{server_name}/{media_id}/", download_authenticated
    )
    router.add_route(
        "GET", CLIENT_V1 + "/thumbnail/{server_name}/{media_id}", thumbnail_authenticated
    )
    # Synapse still serves the legacy downloads under /_matrix/media/v1 too (synapse-admin).
    router.add_route("GET", LEGACY_V1 + "/download/{server_name}/{media_id}", download_legacy)
    router.add_route(
        "GET", LEGACY_V1 + "/download/{server_name}/{media_id}/{file_name}", download_legacy
    )
    router.add_route("GET", LEGACY_V1 + "/thumbnail/{server_name}/{media_id}", thumbnail_legacy)
    router.add_route("POST", "/_matrix/media/v1/create", create)
    for prefix in MEDIA_PREFIXES:
        router.add_route("POST", prefix + "/upload", upload)
        router.add_route("PUT", prefix + "/upload/{server_name}/{media_id}", upload_to)
        router.add_route("GET", prefix + "/config", config)
        router.add_route("GET", prefix + "/download/{server_name}/{media_id}", download_legacy)
        router.add_route(
            "GET", prefix + "/download/{server_name}/{media_id}/{file_name}", download_legacy
        )
        router.add_route("GET", prefix + "/thumbnail/{server_name}/{media_id}", thumbnail_legacy)
