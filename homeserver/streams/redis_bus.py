"""Several processes over one PostgreSQL database: what each tells the others through Redis.

One pub/sub channel, ``<redis.prefix>bus``. Each message is a small JSON object
``{"o": <instance_name>/<random>, "m": [...]}`` carrying one or more items:

* ``{"t": "notify", "r": [room IDs], "u": [user IDs]}``: a local :meth:`Notifier.notify` (a
  write of events, to-device, device lists, account data, receipts, typing, presence, push);
  every other process wakes its own long polls and room listeners (the push evaluator …);
* ``{"t": "events", "e": [event IDs] | null}``: events whose cached copy changed (a redaction
  applied, signatures added) or, ``null``, a purge: every cache of events and state is emptied;
* ``{"t": "hello"}``: a process (re)connected; it may have missed or failed to send messages,
  so every other process empties its event cache and wakes its waiters to re-check;
* anything a service registers with :meth:`RedisBus.subscribe` (typing, presence, and
  ``{"t": "user_overrides"}``: an admin changed a shadow ban, suspension or rate-limit override).

A process ignores its own messages (``o``). While Redis cannot be reached the server keeps
serving, only slower: waiters are woken whenever a poll of the stream positions every
``fallback_interval`` seconds sees one move, the event cache is bypassed, the shared rate
limits fall back to each process's own (``redis_ratelimit.py``), and the connection is retried
with backoff. ``connected`` is the ``homeserver_redis_connected`` gauge; the loss is logged once
at WARNING and the recovery at INFO.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from homeserver.config.redis import RedisConfig
from homeserver.storage import Store
from homeserver.streams.notifier import ANY_ROOM, Notifier

logger = logging.getLogger(__name__)

#: Stream positions, compared by the fallback poll (``SyncService.current_token``).
PositionProbe = Callable[[], Awaitable[object]]
#: Told each item of a registered type sent by another process.
ItemHandler = Callable[[dict[str, Any]], None]

FALLBACK_INTERVAL_S = 1.0
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 5.0
#: The subscription is PINGed this often, and given up when silent for longer than the limit.
PING_INTERVAL_S = 5.0
SILENT_LIMIT_S = 12.0
#: Items queued while the publisher is slow or Redis is away, beyond which the oldest go (the
#: receivers' fallback covers a lost notification; "hello" on reconnection a lost invalidation).
MAX_QUEUED = 10_000
#: Items per published message at most.
BATCH = 500


class RedisBus:
    def __init__(
        self,
        config: RedisConfig,
        instance_name: str,
        notifier: Notifier,
        store: Store,
        probe: PositionProbe,
        *,
        fallback_interval: float = FALLBACK_INTERVAL_S,
        backoff_max: float = BACKOFF_MAX_S,
    ) -> None:
        self.config = config
        self.instance_name = instance_name
        #: Who sent a message: the instance name and a random part, so that two processes
        #: given one name by mistake still hear each other.
        self.origin = f"{instance_name}/{secrets.token_hex(4)}"
        self.notifier = notifier
        self.store = store
        self.probe = probe
        self.fallback_interval = fallback_interval
        self.backoff_max = backoff_max
        self.channel = f"{config.prefix}bus"
        #: Whether the subscription is up (the gauge); False until the first connection.
        self.connected = False
        #: Times the connection was (re)established (tests wait on it).
        self.connections = 0
        self._client: aioredis.Redis | None = None
        self._queue: list[dict[str, Any]] = []
        self._queued = asyncio.Event()
        self._handlers: dict[str, ItemHandler] = {}
        self._task: asyncio.Task[None] | None = None
        self._fallback: asyncio.Task[None] | None = None
        self._state_changed = asyncio.Event()
        self._reconnect = asyncio.Event()
        self._lost_logged = False
        notifier.add_publisher(self._on_notify)
        store.events.invalidation_listeners.append(self._on_invalidate)
        # Until the first connection nothing from the others can arrive: poll, do not cache.
        store.events.set_caching(False)

    # --- for the rest of the server -----------------------------------------------------
    @property
    def client(self) -> aioredis.Redis | None:
        """The command connection while connected (the shared rate limits use it)."""
        return self._client if self.connected else None

    def subscribe(self, item_type: str, handler: ItemHandler) -> None:
        """Have ``handler`` told each ``item_type`` item another process publishes."""
        self._handlers[item_type] = handler

    def publish(self, item: dict[str, Any]) -> None:
        """Send ``item`` (with a ``"t"`` type) to the other processes, soon and in order."""
        self._queue.append(item)
        if len(self._queue) > MAX_QUEUED:
            del self._queue[: len(self._queue) - MAX_QUEUED]
        self._queued.set()

    def connection_trouble(self) -> None:
        """A command failed: treat the connection as lost now, not at the next read."""
        if self.connected:
            self._set_connected(False)
            self._reconnect.set()

    async def wait_connected(self, connected: bool = True) -> None:
        """Return once ``connected`` is as asked (tests)."""
        while self.connected != connected:
            self._state_changed.clear()
            await self._state_changed.wait()

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="redis-bus")
            self._fallback = asyncio.create_task(self._poll_while_away(), name="redis-fallback")

    async def stop(self) -> None:
        for task in (self._task, self._fallback):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._fallback = None
        await self._close_client()
        self.connected = False

    # --- the connection -----------------------------------------------------------------
    async def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            connections = self.connections
            try:
                await self._serve_connection()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as e:
                if not self._lost_logged:
                    logger.warning(
                        "Redis at %s:%d unreachable (%s): long polls fall back to polling the"
                        " database every %.1fs and caches are bypassed until it is back",
                        self.config.host,
                        self.config.port,
                        e,
                        self.fallback_interval,
                    )
                    self._lost_logged = True
            except Exception:
                logger.exception("Redis bus failed")
            self._set_connected(False)
            await self._close_client()
            if self.connections > connections:
                backoff = BACKOFF_MIN_S  # it was up: retry soon, then back off again
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.backoff_max)

    def _new_client(self) -> aioredis.Redis:
        return aioredis.Redis(
            host=self.config.host,
            port=self.config.port,
            db=self.config.dbid,
            password=self.config.password,
            socket_connect_timeout=2,
            socket_timeout=2,
            # We reconnect ourselves (with backoff, and the fallback meanwhile).
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )

    async def _serve_connection(self) -> None:
        client = self._new_client()
        self._client = client
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
            await client.ping()
            # Subscribed first: whatever the others send from now on reaches us.
            self.connections += 1
            self._set_connected(True)
            if self._lost_logged:
                logger.info("Redis at %s:%d reachable again", self.config.host, self.config.port)
                self._lost_logged = False
            self._queue.insert(0, {"t": "hello"})
            self._queued.set()
            self._reconnect.clear()
            reader = asyncio.create_task(self._read(pubsub))
            writer = asyncio.create_task(self._write(client))
            trouble = asyncio.create_task(self._reconnect.wait())
            try:
                done, _ = await asyncio.wait(
                    (reader, writer, trouble), return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for task in (reader, writer, trouble):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                        await task
            for task in done:
                if task is not trouble and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            raise ConnectionError("a command failed")
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    def _set_connected(self, connected: bool) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        # Connected: invalidations reach us again; what they missed is dropped now. Not
        # connected: nothing may be cached, as no invalidation can arrive.
        self.store.events.set_caching(connected)
        # Either way notifications from the others may have been lost: everyone re-checks (and
        # from now on the fallback poll, or the others' messages, wake them).
        self.notifier.notify_local([ANY_ROOM])
        self._state_changed.set()

    async def _read(self, pubsub: Any) -> None:
        """Deliver the others' messages; PING the subscription now and then, so a Redis that
        vanished without closing the connection (a network partition) is noticed too."""
        loop = asyncio.get_running_loop()
        heard = next_ping = loop.time()
        while True:
            if loop.time() >= next_ping:
                await pubsub.ping()
                next_ping = loop.time() + PING_INTERVAL_S
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                if loop.time() - heard > SILENT_LIMIT_S:
                    raise ConnectionError(f"no answer from Redis for {SILENT_LIMIT_S:.0f}s")
                continue
            heard = loop.time()
            if message.get("type") == "message":
                self._receive(message["data"])

    async def _write(self, client: aioredis.Redis) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            while self._queue:
                items, self._queue = self._queue[:BATCH], self._queue[BATCH:]
                payload = json.dumps({"o": self.origin, "m": items}, separators=(",", ":"))
                try:
                    await client.publish(self.channel, payload)
                except BaseException:
                    # Not lost: sent again after the reconnection (after its "hello").
                    self._queue[:0] = items
                    raise

    # --- receiving ----------------------------------------------------------------------
    def _receive(self, data: bytes | str) -> None:
        try:
            message = json.loads(data)
            if message.get("o") == self.origin:
                return
            items = message["m"]
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.warning("ignoring a malformed message on %s", self.channel)
            return
        for item in items:
            try:
                self._apply(item)
            except Exception:
                logger.exception("cannot apply %r from %s", item, message.get("o"))

    def _apply(self, item: dict[str, Any]) -> None:
        kind = item.get("t")
        if kind == "notify":
            self.notifier.notify_local(
                [str(r) for r in item.get("r") or ()], [str(u) for u in item.get("u") or ()]
            )
        elif kind == "events":
            event_ids = item.get("e")
            if event_ids is None:
                self._forget_everything()
            else:
                self.store.events.forget(str(e) for e in event_ids)
        elif kind == "hello":
            self.store.events.forget(None)
            self.notifier.notify_local([ANY_ROOM])
        elif isinstance(kind, str) and kind in self._handlers:
            self._handlers[kind](item)

    def _forget_everything(self) -> None:
        self.store.events.forget(None)
        self.store.state.clear_cache()
        self.store.visibility.clear_cache()

    # --- local changes going out ----------------------------------------------------------
    def _on_notify(self, rooms: list[str], users: list[str]) -> None:
        self.publish({"t": "notify", "r": rooms, "u": users})

    def _on_invalidate(self, event_ids: list[str] | None) -> None:
        self.publish({"t": "events", "e": event_ids})

    # --- Redis away -----------------------------------------------------------------------
    async def _poll_while_away(self) -> None:
        """While not connected, wake every waiter when a stream position has moved."""
        last: object = None
        while True:
            if self.connected:
                last = None
                await self.wait_connected(False)
            try:
                now = await self.probe()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("cannot read the stream positions")
                now = None
            if last is not None and now is not None and now != last:
                self.notifier.notify_local([ANY_ROOM])
            if now is not None:
                last = now
            await asyncio.sleep(self.fallback_interval)
