"""``server_notices``: the user that sends notices from the server's admins and the room each
recipient gets them in (Synapse's section and keys). Absent (or without
``system_mxid_localpart``): notices are off and the admin API's ``send_server_notice`` answers
400."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.config._reader import Reader
from homeserver.types import user_id_error

KEYS = frozenset({"server_notices"})

DEFAULT_ROOM_NAME = "Server Notices"


@dataclass(frozen=True, slots=True)
class ServerNoticesConfig:
    #: the notices user's localpart; None: server notices are off.
    system_mxid_localpart: str | None = None
    system_mxid_display_name: str | None = None
    system_mxid_avatar_url: str | None = None
    room_name: str = DEFAULT_ROOM_NAME
    room_avatar_url: str | None = None
    room_topic: str | None = None
    #: join the recipient to the notices room at once rather than invite them.
    auto_join: bool = False

    @property
    def enabled(self) -> bool:
        return self.system_mxid_localpart is not None


def parse_server_notices(reader: Reader, server_name: str) -> ServerNoticesConfig:
    section = reader.sub("server_notices")
    localpart = section.string("system_mxid_localpart", None)
    if localpart is not None and user_id_error(f"@{localpart}:{server_name}"):
        raise section.error("system_mxid_localpart", "is not a valid user ID localpart")
    config = ServerNoticesConfig(
        system_mxid_localpart=localpart,
        system_mxid_display_name=section.string("system_mxid_display_name", None),
        system_mxid_avatar_url=section.string("system_mxid_avatar_url", None),
        room_name=section.string("room_name", DEFAULT_ROOM_NAME),
        room_avatar_url=section.string("room_avatar_url", None),
        room_topic=section.string("room_topic", None),
        auto_join=section.boolean("auto_join", False),
    )
    section.warn_unknown()
    return config
