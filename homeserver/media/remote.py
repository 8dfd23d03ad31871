"""Fetching other servers' media over federation (``/_matrix/federation/v1/media/download``),
for the cache (thumbnails of remote media are made here from the cached original, as Synapse).

The answer is ``multipart/mixed``: a JSON part, then the file itself or a part whose
``Location`` header says where to GET it. Bodies are streamed to disk under a size cap
(``max_upload_size``), at most ``remote_media_download_concurrency`` transfers run at once, and
concurrent requests for one media share one transfer. A server that does not serve the
federation media API (404/405 ``M_UNRECOGNIZED``) is asked on the legacy
``/_matrix/media/v3/download`` path, as Synapse does. An origin that cannot be reached at all
is answered 404 (there is no such media as far as anyone here can tell; Synapse says 502), one
that answers badly 502.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from email.message import Message
from urllib.parse import quote

import aiohttp

from homeserver.federation.client import (
    FederationClient,
    FederationError,
    FederationHttpError,
    FederationUnreachable,
)
from homeserver.media.files import MediaFiles, StagedFile, TooLarge
from homeserver.media.headers import clean_media_type, clean_upload_name

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024
#: the JSON part is an empty object in practice; anything big is a broken peer.
_MAX_METADATA_BYTES = 64 * 1024


class RemoteMediaUnavailable(Exception):
    """The origin did not give us the media; ``not_found`` when it said it has none."""

    def __init__(self, message: str, *, not_found: bool = False, too_large: bool = False) -> None:
        super().__init__(message)
        self.not_found = not_found
        self.too_large = too_large


@dataclass(frozen=True, slots=True)
class FetchedMedia:
    #: staged, not yet in place: the caller commits it under the files lock.
    file: StagedFile
    media_type: str
    upload_name: str | None
    #: fetched through the authenticated federation API (not the legacy path).
    authenticated: bool


async def _response_chunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for chunk in response.content.iter_chunked(_CHUNK):
        yield chunk


async def _part_chunks(part: aiohttp.BodyPartReader) -> AsyncIterator[bytes]:
    while True:
        chunk = await part.read_chunk(_CHUNK)
        if not chunk:
            return
        yield chunk


class RemoteMediaFetcher:
    def __init__(
        self,
        client: FederationClient,
        files: MediaFiles,
        *,
        max_size: int,
        concurrency: int,
        timeout: float = 60.0,
    ) -> None:
        self._client = client
        self._files = files
        self._max_size = max_size
        self._slots = asyncio.Semaphore(concurrency)
        self._timeout = timeout
        self._in_flight: dict[tuple[str, ...], asyncio.Future[FetchedMedia]] = {}

    async def download(self, origin: str, media_id: str) -> FetchedMedia:
        return await self._shared(
            ("download", origin, media_id), lambda: self._download(origin, media_id)
        )

    async def _shared(
        self, key: tuple[str, ...], fetch: Callable[[], Awaitable[FetchedMedia]]
    ) -> FetchedMedia:
        running = self._in_flight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[FetchedMedia] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            async with self._slots:
                result = await fetch()
            future.set_result(result)
            return result
        except BaseException as e:
            future.set_exception(e)
            # Retrieved here so that a future no one else awaited does not log a warning.
            future.exception()
            raise
        finally:
            del self._in_flight[key]

    async def _download(self, origin: str, media_id: str) -> FetchedMedia:
        path = f"/_matrix/federation/v1/media/download/{quote(media_id, safe='')}"
        try:
            return await self._multipart(origin, path, {"timeout_ms": "20000"})
        except FederationHttpError as e:
            if e.status in (404, 405, 400) and e.errcode in ("M_UNRECOGNIZED", None):
                return await self._legacy(origin, media_id)
            raise self._unavailable(e) from None
        except FederationError as e:
            raise self._unavailable(e) from None

    @staticmethod
    def _unavailable(error: FederationError) -> RemoteMediaUnavailable:
        # A server that says 404, and one we cannot reach at all (no such name, no address the
        # IP policy allows, nothing listening): as far as the client can tell there is no such
        # media (404, as our profile lookups answer). A server that answers badly: 502.
        not_found = isinstance(error, FederationUnreachable) or (
            isinstance(error, FederationHttpError) and error.status == 404
        )
        return RemoteMediaUnavailable(str(error), not_found=not_found)

    async def _multipart(self, origin: str, path: str, query: dict[str, str]) -> FetchedMedia:
        async with self._client.stream_get(origin, path, query, timeout=self._timeout) as answer:
            content_type = answer.headers.get("Content-Type", "")
            if not content_type.lower().startswith("multipart/mixed"):
                raise RemoteMediaUnavailable(f"{origin} answered {content_type!r}, not multipart")
            try:
                reader = aiohttp.MultipartReader(answer.headers, answer.content)
                metadata = await reader.next()
                if not isinstance(metadata, aiohttp.BodyPartReader):
                    raise RemoteMediaUnavailable(f"{origin} sent no metadata part")
                raw = await metadata.read_chunk(_MAX_METADATA_BYTES)
                if await metadata.read_chunk(1):
                    raise RemoteMediaUnavailable(f"{origin} sent oversized media metadata")
                if not isinstance(json.loads(raw or b"{}"), dict):
                    raise RemoteMediaUnavailable(f"{origin} sent metadata that is not an object")
                part = await reader.next()
                if not isinstance(part, aiohttp.BodyPartReader):
                    raise RemoteMediaUnavailable(f"{origin} sent no media part")
                location = part.headers.get("Location")
                if location is not None:
                    return await self._follow(location)
                return await self._store(
                    _part_chunks(part),
                    part.headers.get("Content-Type"),
                    part.filename,
                    authenticated=True,
                )
            except (ValueError, aiohttp.ClientError, AssertionError) as e:
                # A malformed multipart body (aiohttp raises ValueError/AssertionError on some).
                raise RemoteMediaUnavailable(f"{origin} sent a malformed answer: {e}") from None

    async def _follow(self, location: str) -> FetchedMedia:
        try:
            async with self._client.stream_url(location, timeout=self._timeout) as answer:
                if answer.status != 200:
                    raise RemoteMediaUnavailable(f"redirect target answered {answer.status}")
                return await self._store(
                    _response_chunks(answer),
                    answer.headers.get("Content-Type"),
                    _filename_of(answer.headers.get("Content-Disposition")),
                    authenticated=True,
                )
        except FederationError as e:
            raise self._unavailable(e) from None

    async def _legacy(self, origin: str, media_id: str) -> FetchedMedia:
        path = f"/_matrix/media/v3/download/{quote(origin, safe='')}/{quote(media_id, safe='')}"
        query = {"allow_remote": "false", "timeout_ms": "20000"}
        try:
            async with self._client.stream_get(
                origin, path, query, timeout=self._timeout
            ) as answer:
                if answer.status != 200:
                    raise RemoteMediaUnavailable(f"{origin} answered {answer.status}")
                return await self._store(
                    _response_chunks(answer),
                    answer.headers.get("Content-Type"),
                    _filename_of(answer.headers.get("Content-Disposition")),
                    authenticated=False,
                )
        except FederationError as e:
            raise self._unavailable(e) from None

    async def _store(
        self,
        chunks: AsyncIterator[bytes],
        media_type: str | None,
        filename: str | None,
        *,
        authenticated: bool,
    ) -> FetchedMedia:
        try:
            written = await self._files.stage_stream(chunks, self._max_size)
        except TooLarge:
            raise RemoteMediaUnavailable(
                "remote media is over max_upload_size", too_large=True
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError, FederationUnreachable) as e:
            raise RemoteMediaUnavailable(f"transfer failed: {e}") from None
        return FetchedMedia(
            written, clean_media_type(media_type), clean_upload_name(filename), authenticated
        )


def _filename_of(disposition: str | None) -> str | None:
    if not disposition:
        return None
    try:
        message = Message()
        message["Content-Disposition"] = disposition
        name = message.get_filename()
    except (ValueError, TypeError, IndexError):
        return None
    return name if isinstance(name, str) else None
