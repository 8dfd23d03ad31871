"""Typed keys under which homeserver.app hands the shared objects to the handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from nacl.signing import SigningKey

from homeserver.clock import WallClock
from homeserver.config import HomeserverConfig

CONFIG = web.AppKey("config", HomeserverConfig)
SIGNING_KEY = web.AppKey("signing_key", SigningKey)
CLOCK = web.AppKey("clock", WallClock)

if TYPE_CHECKING:
    from homeserver.app import Homeserver

#: the whole homeserver: store, services, config (handlers use this one).
HS: web.AppKey[Homeserver] = web.AppKey("homeserver")
