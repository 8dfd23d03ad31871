"""homeserver.yaml: one module per section, each a frozen dataclass with validation.

Key names are Synapse's wherever the concept exists, so an operator's Synapse config mostly
carries over; see config.sample.yaml for every key.
"""

from homeserver.config._reader import ConfigError
from homeserver.config.database import DatabaseConfig
from homeserver.config.federation import FederationConfig
from homeserver.config.homeserver import HomeserverConfig
from homeserver.config.keys import KeysConfig, OldVerifyKey
from homeserver.config.listeners import ListenerConfig, TlsConfig
from homeserver.config.log_config import LoggingConfig
from homeserver.config.modules import ModuleConfig
from homeserver.config.ratelimiting import (
    JoinRateLimits,
    LoginRateLimits,
    RateLimit,
    RateLimitingConfig,
)
from homeserver.config.registration import RegistrationConfig
from homeserver.config.room_upgrades import RoomUpgradesConfig
from homeserver.config.rooms import EncryptionByDefault, RoomsConfig
from homeserver.config.server import ServerConfig
from homeserver.config.voip import VoipConfig

__all__ = [
    "ConfigError",
    "DatabaseConfig",
    "EncryptionByDefault",
    "FederationConfig",
    "HomeserverConfig",
    "JoinRateLimits",
    "KeysConfig",
    "ListenerConfig",
    "LoggingConfig",
    "LoginRateLimits",
    "ModuleConfig",
    "OldVerifyKey",
    "RateLimit",
    "RateLimitingConfig",
    "RegistrationConfig",
    "RoomUpgradesConfig",
    "RoomsConfig",
    "ServerConfig",
    "TlsConfig",
    "VoipConfig",
]
