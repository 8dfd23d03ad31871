"""Thumbnails with Pillow: ``scale`` (fit inside the box, aspect kept) and ``crop`` (fill the
box, then cut the middle), never larger than the original, as Synapse.

JPEG sources give JPEG thumbnails, every other image type PNG. Images of more than
``max_image_pixels`` are refused before their pixels are decoded (decompression bombs), and
the work runs off the event loop (the caller uses an executor).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

#: the media types thumbnails are made of (Synapse's default list).
THUMBNAILABLE_TYPES = frozenset({"image/jpeg", "image/jpg", "image/webp", "image/gif", "image/png"})


class CannotThumbnail(Exception):
    """Not a readable image of an allowed type and size."""


@dataclass(frozen=True, slots=True)
class ThumbnailImage:
    data: bytes
    media_type: str
    width: int
    height: int


def _aspect(source: tuple[int, int], max_width: int, max_height: int) -> tuple[int, int]:
    width, height = source
    if max_width * height < max_height * width:
        return max_width, max(1, (max_width * height) // width)
    return max(1, (max_height * width) // height), max_height


def make_thumbnail(
    path: Path, width: int, height: int, method: str, max_pixels: int
) -> ThumbnailImage:
    try:
        with Image.open(path) as image:
            if image.width * image.height > max_pixels:
                raise CannotThumbnail("image has too many pixels")
            jpeg = image.format == "JPEG"
            if jpeg:
                # Decode at a reduced scale when the thumbnail is much smaller (much faster).
                image.draft("RGB", (width, height))
            image = ImageOps.exif_transpose(image) or image
            image = _resize(image, width, height, method)
            return _encode(image, jpeg)
    except CannotThumbnail:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise CannotThumbnail(str(e)) from None


def _resize(image: Image.Image, width: int, height: int, method: str) -> Image.Image:
    source = (image.width, image.height)
    if method == "crop":
        if width >= image.width and height >= image.height:
            return image.copy()
        # Scale so the box is covered, then cut the middle.
        if width * image.height < height * image.width:
            scaled = (max(1, (height * image.width) // image.height), height)
        else:
            scaled = (width, max(1, (width * image.height) // image.width))
        scaled = (min(scaled[0], image.width), min(scaled[1], image.height))
        resized = image.resize(scaled, Image.Resampling.LANCZOS)
        crop_w, crop_h = min(width, scaled[0]), min(height, scaled[1])
        left = (scaled[0] - crop_w) // 2
        top = (scaled[1] - crop_h) // 2
        return resized.crop((left, top, left + crop_w, top + crop_h))
    target = _aspect(source, width, height)
    target = (min(target[0], image.width), min(target[1], image.height))
    if target == source:
        return image.copy()
    return image.resize(target, Image.Resampling.LANCZOS)


def _encode(image: Image.Image, jpeg: bool) -> ThumbnailImage:
    out = io.BytesIO()
    if jpeg:
        image.convert("RGB").save(out, "JPEG", quality=80)
        media_type = "image/jpeg"
    else:
        if image.mode not in ("RGB", "RGBA", "L", "LA"):
            image = image.convert("RGBA")
        image.save(out, "PNG")
        media_type = "image/png"
    return ThumbnailImage(out.getvalue(), media_type, image.width, image.height)
