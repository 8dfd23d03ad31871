"""Operator modules (config ``modules``, Synapse's key): each entry names a class by import
path; it is built once at start-up with its ``config`` mapping and a :class:`ModuleApi`, and
hears the room-lifecycle domain events (``room.created``, ``room.upgraded``,
``room.upgrade.failed``, …) through the callbacks it registers.

A module cannot break the server: a class that cannot be imported or built stops start-up with
one line for the operator (like a config error), and a callback that raises or hangs is logged
and never fails the operation that published the event (the bus isolates subscribers).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from typing import Any

from homeserver.config import ConfigError
from homeserver.config.modules import ModuleConfig
from homeserver.rooms.bus import DomainEventBus, Subscriber

logger = logging.getLogger(__name__)


class ModuleApi:
    """What a module gets: the server's name and a way to hear domain events."""

    def __init__(self, server_name: str, bus: DomainEventBus) -> None:
        self.server_name = server_name
        self._bus = bus

    def register_domain_event_callback(self, callback: Subscriber) -> None:
        """``callback(event)`` (sync or async) after each domain event; ``event.name`` and
        ``event.payload`` say what happened."""
        self._bus.subscribe(callback)


def load_modules(
    modules: Sequence[ModuleConfig], server_name: str, bus: DomainEventBus
) -> list[Any]:
    """Build every configured module; ConfigError (naming the entry) if one cannot be."""
    loaded = []
    for index, entry in enumerate(modules):
        where = f"modules[{index}].module"
        module_path, _, class_name = entry.module.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_path), class_name)
        except (ImportError, AttributeError) as e:
            raise ConfigError(where, f"cannot import {entry.module}: {e}") from None
        try:
            instance = cls(dict(entry.config), ModuleApi(server_name, bus))
        except Exception as e:  # a module's own failure, reported like a config error
            raise ConfigError(where, f"{entry.module} failed to start: {e}") from None
        logger.info("loaded module %s", entry.module)
        loaded.append(instance)
    return loaded
