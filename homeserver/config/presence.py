"""``presence``: whether the server tracks and shares presence (Synapse's
``presence: {enabled: true}``, on by default)."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.config._reader import Reader

KEYS = frozenset({"presence"})


@dataclass(frozen=True, slots=True)
class PresenceConfig:
    #: Off: GET /presence answers offline, PUT and /sync's set_presence change nothing, /sync
    #: carries no presence and no m.presence EDU is sent or accepted (as Synapse).
    enabled: bool = True


def parse_presence(reader: Reader) -> PresenceConfig:
    section = reader.sub("presence")
    config = PresenceConfig(enabled=section.boolean("enabled", True))
    section.warn_unknown()
    return config
