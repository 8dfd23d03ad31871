"""The ``rc_*`` token buckets in Redis, shared by every process (:class:`SharedBuckets`).

One hash per limiter and key, ``<prefix>rl:<limiter>:<key>`` with ``tokens`` and ``ts``,
updated atomically by a Lua script on Redis's own clock (the processes' clocks need not agree)
with the same arithmetic as the per-process bucket: refill at ``per_second`` up to
``burst_count``, take ``cost`` or answer how many tokens are missing. A bucket expires once it
would be full again. When Redis cannot be reached, :meth:`take` answers ``None`` and the
limiter uses its own bucket until the bus is connected again.
"""

from __future__ import annotations

import logging
import math

from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from homeserver.config.ratelimiting import RateLimit
from homeserver.streams.redis_bus import RedisBus

logger = logging.getLogger(__name__)

# KEYS[1]: the bucket. ARGV: per_second, burst_count, cost, "1" to take (else only look).
# Returns "0" when the tokens are there, else the tokens missing (as strings: Redis would
# truncate Lua numbers to integers).
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
if tokens < cost then
  return tostring(cost - tokens)
end
if ARGV[4] == '1' then
  tokens = tokens - cost
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
  local ttl = 86400
  if rate > 0 then
    ttl = math.ceil((burst - tokens) / rate) + 1
  end
  redis.call('EXPIRE', KEYS[1], ttl)
end
return '0'
"""


class RedisBuckets:
    def __init__(self, bus: RedisBus) -> None:
        self.bus = bus
        self.prefix = f"{bus.config.prefix}rl:"
        self._script: AsyncScript | None = None

    async def take(
        self, bucket: str, limit: RateLimit, cost: float, *, charge: bool
    ) -> float | None:
        client = self.bus.client
        if client is None:
            return None
        try:
            if self._script is None:
                self._script = client.register_script(_TAKE)
            # EVALSHA, loading the script on NOSCRIPT (a restarted Redis).
            answer = await self._script(
                keys=[self.prefix + bucket],
                args=[
                    repr(float(limit.per_second)),
                    repr(float(limit.burst_count)),
                    repr(float(cost)),
                    "1" if charge else "0",
                ],
                client=client,
            )
        except (RedisError, OSError) as e:
            logger.warning("shared rate limit unavailable, using this process's: %s", e)
            self.bus.connection_trouble()
            return None
        missing = float(answer)
        return missing if math.isfinite(missing) and missing > 0 else 0.0
