"""``redis``: several processes over one PostgreSQL database (``instance_name`` is in
``instance.py``).

Synapse's names: ``redis: {enabled, host, port, password, dbid}`` and ``instance_name``. Ours
adds ``redis.prefix``, put before every key and channel this server uses, so that two servers
(or two tests) can share one Redis; by default it is derived from ``server_name``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from homeserver.config._reader import Reader

KEYS = frozenset({"redis"})

DEFAULT_PORT = 6379


@dataclass(frozen=True, slots=True)
class RedisConfig:
    #: Off (the default): one process; wake-ups, caches and rate limits stay in its memory.
    enabled: bool = False
    host: str = "localhost"
    port: int = DEFAULT_PORT
    password: str | None = field(default=None, repr=False)
    dbid: int = 0
    #: Before every key and channel (ends with ":").
    prefix: str = ""


def parse_redis(reader: Reader, server_name: str) -> RedisConfig:
    section = reader.sub("redis")
    prefix = section.string("prefix", f"homeserver:{server_name}")
    if not prefix.endswith(":"):
        prefix += ":"
    password = section.string("password", "") or None
    config = RedisConfig(
        enabled=section.boolean("enabled", False),
        host=section.string("host", "localhost"),
        port=section.integer("port", DEFAULT_PORT, minimum=1, maximum=65535),
        password=password,
        dbid=section.integer("dbid", 0, minimum=0),
        prefix=prefix,
    )
    section.warn_unknown()
    return config
