"""``server_name``, ``public_baseurl``, ``default_room_version``, ``serve_server_wellknown`` and
``user_ips_max_age`` (how long where a session was used from is kept, as Synapse's)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from homeserver.config._reader import Reader
from homeserver.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS
from homeserver.types import server_name_error

KEYS = frozenset(
    {
        "server_name",
        "public_baseurl",
        "default_room_version",
        "serve_server_wellknown",
        "user_ips_max_age",
    }
)

#: Synapse's default for ``user_ips_max_age``: 28 days.
DEFAULT_USER_IPS_MAX_AGE_SECONDS = 28 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    server_name: str
    #: As written in the config, or None. Synapse serves ``/.well-known/matrix/client`` only when
    #: it was set explicitly, so the distinction is kept; use :attr:`client_base_url` otherwise.
    public_baseurl: str | None
    default_room_version: str
    serve_server_wellknown: bool
    #: seconds a client address / user agent row is kept after its last use.
    user_ips_max_age: float = DEFAULT_USER_IPS_MAX_AGE_SECONDS

    @property
    def client_base_url(self) -> str:
        return self.public_baseurl or f"https://{self.server_name}/"


def parse_server(reader: Reader) -> ServerConfig:
    server_name = reader.string("server_name")
    reason = server_name_error(server_name)
    if reason:
        raise reader.error("server_name", reason)

    public_baseurl = reader.string("public_baseurl", None)
    if public_baseurl is not None:
        parts = urlsplit(public_baseurl)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise reader.error("public_baseurl", "must be an http:// or https:// URL")
        # Clients append paths to it; Synapse also normalises to a trailing slash.
        if not public_baseurl.endswith("/"):
            public_baseurl += "/"

    version = reader.raw("default_room_version", DEFAULT_ROOM_VERSION)
    # YAML reads an unquoted 10 or 1 as a number; the room version "10" is what was meant.
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    if not isinstance(version, str) or version not in KNOWN_ROOM_VERSIONS:
        known = ", ".join(KNOWN_ROOM_VERSIONS)
        raise reader.error("default_room_version", f"must be one of {known}, not {version!r}")

    return ServerConfig(
        server_name=server_name,
        public_baseurl=public_baseurl,
        default_room_version=version,
        serve_server_wellknown=reader.boolean("serve_server_wellknown", False),
        user_ips_max_age=reader.duration_seconds(
            "user_ips_max_age", DEFAULT_USER_IPS_MAX_AGE_SECONDS, bare_number_unit="ms"
        ),
    )
