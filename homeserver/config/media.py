"""The media repository: ``media_store_path``, ``max_upload_size``, ``max_image_pixels``,
``thumbnail_sizes``, ``dynamic_thumbnails``, ``enable_authenticated_media``,
``max_pending_media_uploads``, ``unused_expiration_time`` and ``url_preview_enabled`` (Synapse's
keys and defaults; URL previews are not served, so only ``false`` is accepted)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from homeserver.config._reader import ConfigError, Reader

KEYS = frozenset(
    {
        "media_store_path",
        "max_upload_size",
        "max_image_pixels",
        "thumbnail_sizes",
        "dynamic_thumbnails",
        "enable_authenticated_media",
        "max_pending_media_uploads",
        "unused_expiration_time",
        "url_preview_enabled",
        "remote_media_download_concurrency",
    }
)

ThumbnailMethod = Literal["crop", "scale"]


@dataclass(frozen=True, slots=True)
class ThumbnailSize:
    width: int
    height: int
    method: ThumbnailMethod


# Synapse's defaults (docs/usage/configuration/config_documentation.md, "Media Store").
DEFAULT_THUMBNAIL_SIZES = (
    ThumbnailSize(32, 32, "crop"),
    ThumbnailSize(96, 96, "crop"),
    ThumbnailSize(320, 240, "scale"),
    ThumbnailSize(640, 480, "scale"),
    ThumbnailSize(800, 600, "scale"),
)
DEFAULT_MAX_UPLOAD_SIZE = 50 * 1024 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 32 * 1024 * 1024
DEFAULT_UNUSED_EXPIRATION_SECONDS = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class MediaConfig:
    #: where files are kept (created 0700); relative paths are relative to the config file.
    media_store_path: Path
    max_upload_size: int = DEFAULT_MAX_UPLOAD_SIZE
    #: images with more pixels than this are not thumbnailed (decompression bombs).
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    thumbnail_sizes: tuple[ThumbnailSize, ...] = DEFAULT_THUMBNAIL_SIZES
    #: make thumbnails of any size asked for, not only the nearest configured one.
    dynamic_thumbnails: bool = False
    #: media uploaded while on is served only on the authenticated /_matrix/client/v1/media
    #: paths (the legacy /_matrix/media/v3 ones answer 404 for it), as Synapse.
    enable_authenticated_media: bool = True
    #: MXC URIs a user may have created (POST /media/v1/create) and not yet uploaded to.
    max_pending_media_uploads: int = 5
    #: how long a created MXC URI waits for its upload.
    unused_expiration_seconds: float = DEFAULT_UNUSED_EXPIRATION_SECONDS
    #: our key: remote media fetched at once (each holds at most max_upload_size on disk).
    remote_media_download_concurrency: int = 8


_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)B?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def _size(reader: Reader, key: str, default: int) -> int:
    """A byte count: a number, or Synapse's "50M", "10K", "1G" (powers of 1024)."""
    value = reader.raw(key, default)
    if isinstance(value, bool):
        raise reader.error(key, "must be a size such as 50M")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]
    else:
        raise reader.error(key, f"must be a size such as 50M or 100K, not {value!r}")
    if size < 1:
        raise reader.error(key, "must be positive")
    return size


def _thumbnail_sizes(reader: Reader) -> tuple[ThumbnailSize, ...]:
    if not reader.has("thumbnail_sizes"):
        reader.raw("thumbnail_sizes")
        return DEFAULT_THUMBNAIL_SIZES
    sizes: list[ThumbnailSize] = []
    for path, item in reader.sub_list("thumbnail_sizes"):
        item_reader = reader.item_reader(path, item)
        width = item_reader.integer("width", minimum=1, maximum=10000)
        height = item_reader.integer("height", minimum=1, maximum=10000)
        method = item_reader.string("method", "scale")
        if method not in ("crop", "scale"):
            raise ConfigError(f"{path}.method", f"must be crop or scale, not {method!r}")
        item_reader.warn_unknown()
        sizes.append(ThumbnailSize(width, height, method))  # type: ignore[arg-type]
    return tuple(dict.fromkeys(sizes))


def parse_media(reader: Reader) -> MediaConfig:
    if reader.boolean("url_preview_enabled", False):
        raise reader.error("url_preview_enabled", "URL previews are not supported; set false")
    store_path = reader.path_value("media_store_path", reader.config_dir / "media_store")
    assert store_path is not None
    return MediaConfig(
        media_store_path=store_path,
        max_upload_size=_size(reader, "max_upload_size", DEFAULT_MAX_UPLOAD_SIZE),
        max_image_pixels=_size(reader, "max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS),
        thumbnail_sizes=_thumbnail_sizes(reader),
        dynamic_thumbnails=reader.boolean("dynamic_thumbnails", False),
        enable_authenticated_media=reader.boolean("enable_authenticated_media", True),
        max_pending_media_uploads=reader.integer("max_pending_media_uploads", 5, minimum=1),
        unused_expiration_seconds=reader.duration_seconds(
            "unused_expiration_time",
            DEFAULT_UNUSED_EXPIRATION_SECONDS,
            bare_number_unit="ms",
        ),
        remote_media_download_concurrency=reader.integer(
            "remote_media_download_concurrency", 8, minimum=1, maximum=256
        ),
    )
