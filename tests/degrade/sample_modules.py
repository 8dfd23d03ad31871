"""Operator modules used by tests/degrade/test_modules.py (importable by dotted path)."""

from __future__ import annotations

from typing import Any

from homeserver.modules import ModuleApi
from homeserver.rooms.bus import DomainEvent


class RecordingModule:
    def __init__(self, config: dict[str, Any], api: ModuleApi) -> None:
        self.config = config
        self.server_name = api.server_name
        self.seen: list[DomainEvent] = []
        api.register_domain_event_callback(self.on_event)

    async def on_event(self, event: DomainEvent) -> None:
        self.seen.append(event)


class FailingModule:
    """Raises on every event it hears."""

    def __init__(self, config: dict[str, Any], api: ModuleApi) -> None:
        api.register_domain_event_callback(self.on_event)

    async def on_event(self, event: DomainEvent) -> None:
        raise RuntimeError("this module is broken")


class BrokenAtStart:
    def __init__(self, config: dict[str, Any], api: ModuleApi) -> None:
        raise ValueError("missing setting 'x'")
