"""What a media response says about its content, so that a browser never runs an upload.

As Synapse: ``Content-Disposition`` is ``inline`` only for a short allow-list of passive types
(no HTML, no SVG, no XML) and ``attachment`` otherwise; text types get ``charset=UTF-8``;
every media response carries ``X-Content-Type-Options: nosniff`` and a sandboxing
``Content-Security-Policy``. A media type a client claims is kept only when it is a plausible
``type/subtype`` token; anything else is served as ``application/octet-stream``.
"""

from __future__ import annotations

import re
from urllib.parse import quote

#: Synapse's INLINE_CONTENT_TYPES (SVG intentionally absent).
INLINE_CONTENT_TYPES = frozenset(
    {
        "text/css",
        "text/plain",
        "text/csv",
        "application/json",
        "application/ld+json",
        "image/jpeg",
        "image/gif",
        "image/png",
        "image/apng",
        "image/webp",
        "image/avif",
        "video/mp4",
        "video/webm",
        "video/ogg",
        "video/quicktime",
        "audio/mp4",
        "audio/webm",
        "audio/aac",
        "audio/mpeg",
        "audio/ogg",
        "audio/wave",
        "audio/wav",
        "audio/x-wav",
        "audio/x-pn-wav",
        "audio/flac",
        "audio/x-flac",
    }
)

#: Synapse's TEXT_CONTENT_TYPES: served with charset=UTF-8 when none was given.
TEXT_CONTENT_TYPES = frozenset(
    {
        "text/css",
        "text/csv",
        "text/html",
        "text/calendar",
        "text/plain",
        "text/javascript",
        "application/json",
        "application/ld+json",
        "application/rtf",
        "image/svg+xml",
        "text/xml",
    }
)

DEFAULT_MEDIA_TYPE = "application/octet-stream"
MAX_MEDIA_TYPE_LENGTH = 255
MAX_UPLOAD_NAME_LENGTH = 255

_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
_MEDIA_TYPE = re.compile(
    rf"^({_TOKEN})/({_TOKEN})((?:\s*;\s*{_TOKEN}=(?:{_TOKEN}|\"[^\"\\\r\n]*\"))*)\s*$"
)

#: Synapse's header set for every media response.
MEDIA_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf;"
        " style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"
    ),
    "Cross-Origin-Resource-Policy": "cross-origin",
}


def clean_media_type(value: str | None) -> str:
    """A stored media type: the client's when it is a well-formed ``type/subtype[; params]``,
    else ``application/octet-stream``."""
    if not value or len(value) > MAX_MEDIA_TYPE_LENGTH:
        return DEFAULT_MEDIA_TYPE
    match = _MEDIA_TYPE.match(value.strip())
    if match is None:
        return DEFAULT_MEDIA_TYPE
    return value.strip()


def essence(media_type: str) -> str:
    """``type/subtype`` in lower case, without parameters."""
    return media_type.split(";", 1)[0].strip().lower()


def clean_upload_name(value: str | None) -> str | None:
    """A file name to remember: no path, no control characters, bounded; None if empty."""
    if value is None:
        return None
    name = "".join(ch for ch in value if ch >= " " and ch != "\x7f")
    name = name.replace("/", "_").replace("\\", "_").strip()
    if not name:
        return None
    return name[:MAX_UPLOAD_NAME_LENGTH]


def served_content_type(media_type: str) -> str:
    media_type = clean_media_type(media_type)
    if essence(media_type) in TEXT_CONTENT_TYPES and "charset" not in media_type.lower():
        return f"{media_type}; charset=UTF-8"
    return media_type


def content_disposition(media_type: str, upload_name: str | None) -> str:
    """``inline`` for the allow-listed types, else ``attachment``; the file name as a plain
    quoted string when it is safe ASCII, else RFC 5987 ``filename*=utf-8''…``."""
    kind = "inline" if essence(media_type) in INLINE_CONTENT_TYPES else "attachment"
    name = clean_upload_name(upload_name)
    if not name:
        return kind
    if name.isascii() and all(ch.isalnum() or ch in " !#$%&'()*+,-.^_`|~" for ch in name):
        return f'{kind}; filename="{name}"'
    return f"{kind}; filename*=utf-8''{quote(name, safe='')}"


def media_headers(media_type: str, upload_name: str | None) -> dict[str, str]:
    return {
        "Content-Type": served_content_type(media_type),
        "Content-Disposition": content_disposition(media_type, upload_name),
        **MEDIA_SECURITY_HEADERS,
    }
