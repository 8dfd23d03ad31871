"""Media files on disk, named by the SHA-256 of their content.

``<media_store_path>/content/ab/cd/abcd…`` holds each distinct content once, whatever its media
IDs; a client never chooses any part of a path. An upload is written to ``tmp/`` while it is
hashed and counted (refused as soon as it passes the size cap, so an oversized body is never
held whole), then renamed into place: a reader sees a whole file or none. Directories are 0700
and files 0600 (homeserver/private_files.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from homeserver.private_files import PRIVATE_FILE_MODE, ensure_private_dir

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
STALE_TMP_SECONDS = 24 * 3600


class TooLarge(Exception):
    """The content passed the size cap; nothing was kept."""


@dataclass(frozen=True, slots=True)
class StagedFile:
    """Content written and hashed, not yet in place."""

    tmp: Path
    sha256: str
    length: int


class MediaFiles:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._content = root / "content"
        self._tmp = root / "tmp"
        self._ready = False
        # Serialises "is this file still named by a row? then unlink" against "rename a new
        # copy into place, then insert its row" within this process.
        self.lock = asyncio.Lock()

    def _prepare(self) -> None:
        if not self._ready:
            ensure_private_dir(self._content)
            ensure_private_dir(self._tmp)
            self._sweep_stale_tmp()
            self._ready = True

    def _sweep_stale_tmp(self) -> None:
        """Remove staged files a crashed process left behind (another process sharing the
        store may be writing fresh ones: only those untouched for a day go)."""
        cutoff = time.time() - STALE_TMP_SECONDS
        for entry in self._tmp.iterdir():
            with contextlib.suppress(OSError):
                if entry.is_file() and entry.stat().st_mtime < cutoff:
                    entry.unlink()

    def path_for(self, sha256: str) -> Path:
        if not _SHA256_HEX.match(sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self._content / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    async def stage_stream(self, chunks: AsyncIterator[bytes], max_size: int) -> StagedFile:
        """Write ``chunks`` to a temporary file while hashing them; :class:`TooLarge` past
        ``max_size`` bytes (the partial file is removed). :meth:`commit` puts it in place."""
        self._prepare()
        tmp = self._tmp / secrets.token_hex(16)
        digest = hashlib.sha256()
        length = 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    length += len(chunk)
                    if length > max_size:
                        raise TooLarge(length)
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return StagedFile(tmp, digest.hexdigest(), length)

    def stage_bytes(self, data: bytes) -> StagedFile:
        self._prepare()
        tmp = self._tmp / secrets.token_hex(16)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return StagedFile(tmp, hashlib.sha256(data).hexdigest(), len(data))

    def commit(self, staged: StagedFile) -> None:
        """Move a staged file to its content address (call under :attr:`lock`, then store the
        row naming it before releasing the lock)."""
        final = self.path_for(staged.sha256)
        ensure_private_dir(final.parent)
        # Same name, same content: replacing an existing copy changes nothing a reader sees.
        os.replace(staged.tmp, final)

    def discard(self, staged: StagedFile) -> None:
        with contextlib.suppress(FileNotFoundError):
            staged.tmp.unlink()

    def remove(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            self.path_for(sha256).unlink()
