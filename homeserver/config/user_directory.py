"""``user_directory``: who ``POST /user_directory/search`` finds (Synapse's section and keys)."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.config._reader import Reader

KEYS = frozenset({"user_directory"})


@dataclass(frozen=True, slots=True)
class UserDirectoryConfig:
    #: Off: every search answers no results (as Synapse).
    enabled: bool = True
    #: Every user the server knows, not only those sharing a room with the searcher or joined
    #: to a publicly viewable room.
    search_all_users: bool = False
    #: Local users ranked above remote ones.
    prefer_local_users: bool = False
    #: Only local users are found.
    exclude_remote_users: bool = False


def parse_user_directory(reader: Reader) -> UserDirectoryConfig:
    section = reader.sub("user_directory")
    config = UserDirectoryConfig(
        enabled=section.boolean("enabled", True),
        search_all_users=section.boolean("search_all_users", False),
        prefer_local_users=section.boolean("prefer_local_users", False),
        exclude_remote_users=section.boolean("exclude_remote_users", False),
    )
    section.warn_unknown()
    return config
