"""What a process does with each message from the others on the Redis bus (no Redis, no
database: the bus's receiving side fed directly), and what it sends for its own changes."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from homeserver.config.redis import RedisConfig
from homeserver.events.event import Event
from homeserver.room_versions import get_room_version
from homeserver.storage.events import EventsStore
from homeserver.storage.state import StateStore
from homeserver.storage.visibility import VisibilityStore
from homeserver.streams.notifier import ANY_ROOM, Notifier
from homeserver.streams.redis_bus import RedisBus


def _bus() -> tuple[RedisBus, Notifier, Any, list[list[str]]]:
    events = EventsStore(None)  # type: ignore[arg-type]
    store = SimpleNamespace(
        events=events,
        state=StateStore(None, events),  # type: ignore[arg-type]
        visibility=VisibilityStore(None),  # type: ignore[arg-type]
    )
    notifier = Notifier()
    heard: list[list[str]] = []
    notifier.add_listener(heard.append)

    async def probe() -> object:
        return None

    bus = RedisBus(RedisConfig(enabled=True, prefix="t:"), "A", notifier, store, probe)  # type: ignore[arg-type]
    return bus, notifier, store, heard


def _cached(store: Any, event_id: str) -> None:
    event = Event(
        {"type": "m.room.message", "room_id": "!r:x", "sender": "@a:x", "content": {}},
        get_room_version("10"),
        event_id=event_id,
    )
    store.events._remember(event)


def _message(origin: str, *items: dict[str, Any]) -> bytes:
    return json.dumps({"o": origin, "m": list(items)}).encode()


async def test_messages_from_others_are_applied_and_our_own_ignored() -> None:
    bus, notifier, store, heard = _bus()
    store.events.set_caching(True)  # as when connected
    generation = notifier.generation

    bus._receive(_message(bus.origin, {"t": "notify", "r": ["!mine:x"], "u": []}))
    assert notifier.generation == generation and heard == []

    bus._receive(_message("B/1", {"t": "notify", "r": ["!r:x"], "u": ["@a:x"]}))
    assert notifier.generation == generation + 1 and heard == [["!r:x"]]

    _cached(store, "$1")
    _cached(store, "$2")
    bus._receive(_message("B/1", {"t": "events", "e": ["$1"]}))
    assert set(store.events._cache) == {"$2"}
    bus._receive(_message("B/1", {"t": "hello"}))  # B (re)connected: re-check, forget
    assert store.events._cache == {} and heard[-1] == [ANY_ROOM]

    got: list[dict[str, Any]] = []
    bus.subscribe("typing", got.append)
    bus._receive(_message("B/1", {"t": "typing", "r": "!r:x"}, {"t": "unknown"}))
    assert got == [{"t": "typing", "r": "!r:x"}]

    for junk in (b"not json", b"[]", b'{"o": "B/1"}', _message("B/1", {"t": "notify", "r": 5})):
        bus._receive(junk)  # logged and ignored, never raised


async def test_our_changes_are_queued_for_the_others() -> None:
    bus, notifier, store, _ = _bus()
    notifier.notify(["!r:x"], ["@a:x"])
    store.events.invalidate("$1")
    store.events.clear_cache()
    assert bus._queue == [
        {"t": "notify", "r": ["!r:x"], "u": ["@a:x"]},
        {"t": "events", "e": ["$1"]},
        {"t": "events", "e": None},
    ]
    # Not connected yet: nothing is cached (no invalidation could reach us).
    _cached(store, "$3")
    assert store.events._cache == {}
