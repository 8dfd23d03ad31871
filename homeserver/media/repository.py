"""``MediaRepository``: uploads, downloads and thumbnails of local and remote media, and the
admin operations on them (quarantine, deletion, the remote cache, a purged room's media).

Local media lives under a random media ID chosen here; its bytes in a file named by their hash
(``files.py``). Remote media (another ``server_name`` in the MXC URI) is fetched once from its
origin (``remote.py``) and served from the cache afterwards. Quarantined media is answered 404,
as Synapse. Media uploaded while ``enable_authenticated_media`` is on is refused on the legacy
unauthenticated paths.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

from homeserver.clock import WallClock
from homeserver.config.media import MediaConfig, ThumbnailSize
from homeserver.errors import BadRequest, Codes, Forbidden, MatrixError, NotFound
from homeserver.media.files import MediaFiles, StagedFile, TooLarge
from homeserver.media.headers import clean_media_type, clean_upload_name, essence
from homeserver.media.remote import RemoteMediaFetcher, RemoteMediaUnavailable
from homeserver.media.thumbnailer import THUMBNAILABLE_TYPES, CannotThumbnail, make_thumbnail
from homeserver.ratelimit import TokenBucketLimiter
from homeserver.storage import Store
from homeserver.storage.media import (
    LocalMedia,
    MediaKey,
    PendingOutcome,
    RemoteMedia,
    Thumbnail,
    UploadContent,
)
from homeserver.types import server_name_error

logger = logging.getLogger(__name__)

_MEDIA_ID_ALPHABET = string.ascii_letters
MEDIA_ID_LENGTH = 24
#: how long a download of a created-but-not-uploaded MXC URI waits (the spec's timeout_ms).
DEFAULT_WAIT_MS = 20_000
MAX_WAIT_MS = 60_000
_WAIT_POLL_SECONDS = 0.5
#: the largest thumbnail a client may ask for with dynamic_thumbnails.
MAX_THUMBNAIL_SIDE = 4096


def _media_id_ok(media_id: str) -> bool:
    return 0 < len(media_id) <= 255 and all(
        ch.isascii() and (ch.isalnum() or ch in "_-") for ch in media_id
    )


def already_uploaded() -> MatrixError:
    return MatrixError(HTTPStatus.CONFLICT, Codes.CANNOT_OVERWRITE_MEDIA, "Media already uploaded")


def too_large(limit: int) -> MatrixError:
    return MatrixError(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        Codes.TOO_LARGE,
        f"Upload is larger than the maximum of {limit} bytes",
    )


@dataclass(frozen=True, slots=True)
class ServedFile:
    """What to answer a download or thumbnail request with."""

    path: Path
    media_type: str
    upload_name: str | None
    length: int


@dataclass(frozen=True, slots=True)
class UploadRequest:
    chunks: AsyncIterator[bytes]
    #: Content-Length, when the client sent one (checked before reading anything).
    declared_length: int | None
    media_type: str | None
    filename: str | None


class MediaRepository:
    def __init__(
        self,
        store: Store,
        config: MediaConfig,
        server_name: str,
        clock: WallClock,
        *,
        files: MediaFiles,
        remote: RemoteMediaFetcher,
        limiter: TokenBucketLimiter,
    ) -> None:
        self._store = store.media
        self._rooms = store.rooms
        self.config = config
        self.server_name = server_name
        self._clock = clock
        self.files = files
        self._remote = remote
        self._limiter = limiter

    def is_local(self, server_name: str) -> bool:
        return server_name == self.server_name

    def upload_config(self) -> dict[str, int]:
        return {"m.upload.size": self.config.max_upload_size}

    # --- uploads ------------------------------------------------------------------------------

    async def upload(self, user_id: str, request: UploadRequest) -> str:
        """Store a new upload; its ``mxc://`` URI."""
        await self._limiter.check(user_id)
        staged, content = await self._receive(request)
        media_id = _new_media_id()
        async with self.files.lock:
            self.files.commit(staged)
            await self._store.store_local(
                media_id,
                user_id,
                self._clock(),
                content,
                authenticated=self.config.enable_authenticated_media,
            )
        return f"mxc://{self.server_name}/{media_id}"

    async def create(self, user_id: str) -> dict[str, object]:
        """``POST /media/v1/create``: an MXC URI to upload to later."""
        await self._limiter.check(user_id)
        now = self._clock()
        expires = now + int(self.config.unused_expiration_seconds * 1000)
        media_id = _new_media_id()
        created = await self._store.create_pending(
            media_id, user_id, now, expires, self.config.max_pending_media_uploads
        )
        if not created:
            raise MatrixError(
                HTTPStatus.TOO_MANY_REQUESTS,
                Codes.LIMIT_EXCEEDED,
                "You have too many uploads pending; upload to them first",
                retry_after_ms=60_000,
            )
        return {"content_uri": f"mxc://{self.server_name}/{media_id}", "unused_expires_at": expires}

    async def upload_to(
        self, user_id: str, server_name: str, media_id: str, request: UploadRequest
    ) -> None:
        """``PUT /upload/{serverName}/{mediaId}`` into an MXC URI from :meth:`create`."""
        if not self.is_local(server_name) or not _media_id_ok(media_id):
            raise NotFound("Unknown media")
        existing = await self._store.get_local(media_id)
        if existing is None:
            raise NotFound("Unknown media")
        if existing.user_id != user_id:
            raise Forbidden("You may not upload to this media")
        if existing.sha256 is not None:
            raise already_uploaded()
        staged, content = await self._receive(request)
        async with self.files.lock:
            self.files.commit(staged)
            outcome = await self._store.fill_pending(
                media_id,
                user_id,
                self._clock(),
                content,
                authenticated=self.config.enable_authenticated_media,
            )
        if outcome == PendingOutcome.STORED:
            return
        await self._forget_files([content.sha256])
        if outcome == PendingOutcome.ALREADY_UPLOADED:
            raise already_uploaded()
        if outcome == PendingOutcome.NOT_YOURS:
            raise Forbidden("You may not upload to this media")
        raise NotFound("Unknown media")

    async def _receive(self, request: UploadRequest) -> tuple[StagedFile, UploadContent]:
        limit = self.config.max_upload_size
        if request.declared_length is not None and request.declared_length > limit:
            raise too_large(limit)
        try:
            staged = await self.files.stage_stream(request.chunks, limit)
        except TooLarge:
            raise too_large(limit) from None
        return staged, UploadContent(
            sha256=staged.sha256,
            media_length=staged.length,
            media_type=clean_media_type(request.media_type),
            upload_name=clean_upload_name(request.filename),
        )

    # --- downloads ----------------------------------------------------------------------------

    async def download(
        self,
        server_name: str,
        media_id: str,
        *,
        authenticated: bool,
        allow_remote: bool = True,
        wait_ms: int | None = None,
    ) -> ServedFile:
        """The file of ``mxc://server_name/media_id``; ``authenticated``: asked on an
        authenticated path (client v1 or federation)."""
        self._check_ids(server_name, media_id)
        if self.is_local(server_name):
            media = await self._local_with_content(media_id, wait_ms)
            self._check_legacy_access(media.authenticated, authenticated)
            assert media.sha256 is not None
            return self._served(
                media.sha256, media.media_type, media.upload_name, media.media_length
            )
        remote = await self._remote_media(server_name, media_id, allow_remote=allow_remote)
        self._check_legacy_access(remote.authenticated, authenticated)
        return self._served(
            remote.sha256, remote.media_type, remote.upload_name, remote.media_length
        )

    def _served(
        self, sha256: str, media_type: str | None, name: str | None, length: int | None
    ) -> ServedFile:
        path = self.files.path_for(sha256)
        if not path.is_file():
            logger.warning("media file %s is missing", sha256)
            raise NotFound("Media not found")
        return ServedFile(path, media_type or "application/octet-stream", name, length or 0)

    def _check_ids(self, server_name: str, media_id: str) -> None:
        if server_name_error(server_name) or not _media_id_ok(media_id):
            raise NotFound("Media not found")

    def _check_legacy_access(self, media_authenticated: bool, asked_authenticated: bool) -> None:
        # As Synapse: media that arrived under authenticated media is not served on the legacy
        # unauthenticated paths (the answer is the same 404 as for unknown media).
        if media_authenticated and not asked_authenticated:
            raise NotFound("Media not found")

    async def _local_with_content(self, media_id: str, wait_ms: int | None) -> LocalMedia:
        media = await self._store.get_local(media_id)
        if media is not None and media.sha256 is None:
            # Created but not uploaded yet: wait a while for the upload, as the spec says.
            wait = min(MAX_WAIT_MS, DEFAULT_WAIT_MS if wait_ms is None else max(0, wait_ms))
            deadline = asyncio.get_running_loop().time() + wait / 1000
            while media is not None and media.sha256 is None:
                if asyncio.get_running_loop().time() >= deadline:
                    raise MatrixError(
                        HTTPStatus.GATEWAY_TIMEOUT,
                        Codes.NOT_YET_UPLOADED,
                        "Media has not been uploaded yet",
                    )
                await asyncio.sleep(_WAIT_POLL_SECONDS)
                media = await self._store.get_local(media_id)
        if media is None or media.quarantined_by is not None:
            raise NotFound("Media not found")
        return media

    async def _remote_media(self, origin: str, media_id: str, *, allow_remote: bool) -> RemoteMedia:
        cached = await self._store.get_remote(origin, media_id)
        if cached is not None and self.files.exists(cached.sha256):
            if cached.quarantined_by is not None:
                raise NotFound("Media not found")
            await self._store.touch_remote(origin, media_id, self._clock())
            return cached
        if not allow_remote:
            raise NotFound("Media not found")
        try:
            fetched = await self._remote.download(origin, media_id)
        except RemoteMediaUnavailable as e:
            raise self._remote_error(e) from None
        now = self._clock()
        media = RemoteMedia(
            media_origin=origin,
            media_id=media_id,
            media_type=fetched.media_type,
            media_length=fetched.file.length,
            upload_name=fetched.upload_name,
            sha256=fetched.file.sha256,
            created_ts=now,
            last_access_ts=now,
            authenticated=fetched.authenticated,
            quarantined_by=None,
        )
        async with self.files.lock:
            self.files.commit(fetched.file)
            await self._store.store_remote(media)
        # Another request may have cached it first (or an admin quarantined the ID before it
        # was ever fetched): what is stored is what is served.
        stored = await self._store.get_remote(origin, media_id) or media
        if stored.quarantined_by is not None:
            raise NotFound("Media not found")
        return stored

    @staticmethod
    def _remote_error(error: RemoteMediaUnavailable) -> MatrixError:
        if error.not_found:
            return NotFound("Media not found")
        if error.too_large:
            return MatrixError(HTTPStatus.BAD_GATEWAY, Codes.TOO_LARGE, "Remote media is too large")
        logger.info("remote media unavailable: %s", error)
        return MatrixError(HTTPStatus.BAD_GATEWAY, Codes.UNKNOWN, "Cannot fetch the remote media")

    # --- thumbnails ---------------------------------------------------------------------------

    async def thumbnail(
        self,
        server_name: str,
        media_id: str,
        width: int,
        height: int,
        method: str,
        *,
        authenticated: bool,
        allow_remote: bool = True,
        wait_ms: int | None = None,
    ) -> ServedFile:
        self._check_ids(server_name, media_id)
        if width < 1 or height < 1 or method not in ("crop", "scale"):
            raise BadRequest("Invalid thumbnail size or method", Codes.INVALID_PARAM)
        size = self._choose_size(width, height, method)
        if self.is_local(server_name):
            media = await self._local_with_content(media_id, wait_ms)
            self._check_legacy_access(media.authenticated, authenticated)
            assert media.sha256 is not None
            source = (media.sha256, media.media_type or "")
        else:
            remote = await self._remote_media(server_name, media_id, allow_remote=allow_remote)
            self._check_legacy_access(remote.authenticated, authenticated)
            source = (remote.sha256, remote.media_type)
        return await self._thumbnail_of(server_name, media_id, source, size)

    def _choose_size(self, width: int, height: int, method: str) -> ThumbnailSize:
        """The thumbnail to make: the asked size with dynamic_thumbnails, else the smallest
        configured size of that method that covers the request (or the largest there is)."""
        if self.config.dynamic_thumbnails:
            return ThumbnailSize(
                min(width, MAX_THUMBNAIL_SIDE),
                min(height, MAX_THUMBNAIL_SIDE),
                "crop" if method == "crop" else "scale",
            )
        sizes = [s for s in self.config.thumbnail_sizes if s.method == method] or list(
            self.config.thumbnail_sizes
        )
        covering = [s for s in sizes if s.width >= width and s.height >= height]
        if covering:
            return min(covering, key=lambda s: (s.width * s.height, s.width))
        return max(sizes, key=lambda s: (s.width * s.height, s.width))

    async def _thumbnail_of(
        self,
        origin: str,
        media_id: str,
        source: tuple[str, str],
        size: ThumbnailSize,
    ) -> ServedFile:
        sha256, media_type = source
        for existing in await self._store.get_thumbnails(origin, media_id):
            if (existing.width, existing.height, existing.method) == (
                size.width,
                size.height,
                size.method,
            ) and self.files.exists(existing.sha256):
                return self._served(
                    existing.sha256, existing.media_type, None, existing.media_length
                )
        if essence(media_type) not in THUMBNAILABLE_TYPES:
            # As Synapse: no thumbnail of a type it does not thumbnail.
            raise NotFound("Cannot generate a thumbnail of this media type")
        try:
            image = await asyncio.get_running_loop().run_in_executor(
                None,
                make_thumbnail,
                self.files.path_for(sha256),
                size.width,
                size.height,
                size.method,
                self.config.max_image_pixels,
            )
        except CannotThumbnail as e:
            logger.info("no thumbnail of %s/%s: %s", origin, media_id, e)
            raise NotFound("Cannot generate a thumbnail of this media") from None
        written = self.files.stage_bytes(image.data)
        async with self.files.lock:
            self.files.commit(written)
            await self._store.store_thumbnail(
                origin,
                media_id,
                Thumbnail(
                    size.width,
                    size.height,
                    size.method,
                    image.media_type,
                    written.length,
                    written.sha256,
                ),
            )
        return self._served(written.sha256, image.media_type, None, written.length)

    # --- serving other servers ----------------------------------------------------------------

    async def for_federation(
        self, media_id: str, thumbnail: tuple[int, int, str] | None
    ) -> ServedFile:
        """Our own media (never another server's, never a quarantined one), for
        ``/_matrix/federation/v1/media/*``."""
        if thumbnail is None:
            return await self.download(
                self.server_name, media_id, authenticated=True, allow_remote=False
            )
        width, height, method = thumbnail
        return await self.thumbnail(
            self.server_name,
            media_id,
            width,
            height,
            method,
            authenticated=True,
            allow_remote=False,
        )

    # --- admin --------------------------------------------------------------------------------

    async def set_quarantine(self, server_name: str, media_id: str, admin: str | None) -> None:
        self._check_ids(server_name, media_id)
        await self._store.set_quarantine(server_name, media_id, self.is_local(server_name), admin)

    async def delete_local(self, media_id: str) -> bool:
        if not _media_id_ok(media_id) or await self._store.get_local(media_id) is None:
            return False
        async with self.files.lock:
            hashes = await self._store.delete_local(media_id, self.server_name)
            await self._forget_files_locked(hashes)
        return True

    async def purge_remote_cache(self, before_ts: int) -> int:
        async with self.files.lock:
            count, hashes = await self._store.purge_remote_cache(before_ts)
            await self._forget_files_locked(hashes)
        return count

    async def room_exists(self, room_id: str) -> bool:
        return await self._rooms.get_room(room_id) is not None

    async def media_of_room(self, room_id: str) -> list[MediaKey]:
        return await self._store.media_of_room(room_id)

    async def delete_unreferenced(self, keys: Sequence[MediaKey]) -> int:
        """After a room purge: delete those of ``keys`` that no remaining event names (local
        media and the cached copies of remote media); how many."""
        gone = await self._store.unreferenced(keys)
        async with self.files.lock:
            hashes: list[str] = []
            for origin, media_id in gone:
                if self.is_local(origin):
                    hashes += await self._store.delete_local(media_id, self.server_name)
                else:
                    hashes += await self._store.delete_remote(origin, media_id)
            await self._forget_files_locked(hashes)
        return len(gone)

    async def _forget_files(self, hashes: Iterable[str]) -> None:
        async with self.files.lock:
            await self._forget_files_locked(hashes)

    async def _forget_files_locked(self, hashes: Iterable[str]) -> None:
        for sha256 in await self._store.unreferenced_hashes(hashes):
            self.files.remove(sha256)


def _new_media_id() -> str:
    return "".join(secrets.choice(_MEDIA_ID_ALPHABET) for _ in range(MEDIA_ID_LENGTH))
