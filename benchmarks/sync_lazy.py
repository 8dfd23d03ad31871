"""``scripts/bench sync_lazy``: an initial ``/sync`` of a big room with and without lazy-loaded
members, on each engine.

Per engine, in a throw-away database: a public room with ``--members`` joined users besides its
creator (built in memory and persisted ``--join-batch`` joins at a time, not timed), then
``--messages`` messages, each from a different member. The creator's initial ``/sync`` with a
timeline of ``--limit`` events is then timed ``--reads`` times cold (event and state caches
cleared before each) and warm, through the sync service and the canonical JSON encoding the HTTP
layer applies (no socket): once without a filter on members (``full``), once with Element's
``room.state.lazy_load_members`` (``lazy``). Reported per mode: medians, the response's bytes,
and the member events in its state section.

Benchmarks measure; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from signedjson.key import generate_signing_key

from benchmarks._common import (
    ms,
    parse_engines,
    postgres_unreachable,
    rate,
    throwaway_store,
)
from benchmarks.core import (
    CREATOR,
    DEFAULT_POSTGRES_DSN,
    SERVER,
    chunks,
    clear_caches,
    continue_from,
    genesis,
    message,
    user,
)
from homeserver.clock import time_ms
from homeserver.crypto.canonical_json import canonical_json_text
from homeserver.events.builder import Signer
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.push.rules import PushRulesService
from homeserver.room_versions import DEFAULT_ROOM_VERSION, get_room_version
from homeserver.storage import NewRoom, Store
from homeserver.streams.notifier import Notifier
from homeserver.sync.filters import SyncFilter
from homeserver.sync.sync import SyncRequest, SyncService

DEFAULTS = {"members": 5000, "messages": 20, "reads": 5}
QUICK = {"members": 300, "messages": 10, "reads": 2}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sync_lazy")
    group.add_argument("--engines", default="sqlite,postgres", type=parse_engines)
    group.add_argument("--postgres-dsn", default=DEFAULT_POSTGRES_DSN)
    group.add_argument("--members", type=int, help="joined members besides the creator (5000)")
    group.add_argument("--messages", type=int, help="messages, one per member (20)")
    group.add_argument("--limit", type=int, default=20, help="the timeline limit of the filter")
    group.add_argument("--join-batch", type=int, default=100, help="joins persisted at once")
    group.add_argument("--reads", type=int, help="timed syncs per mode and cache (5)")


def log(text: str) -> None:
    print(f"[bench sync_lazy] {text}", file=sys.stderr, flush=True)


def room_events(members: int, messages: int) -> tuple[list[Event], list[Event]]:
    """The genesis events and the rest (joins, then messages), built in memory."""
    signer = Signer(SERVER, generate_signing_key("bench"))
    room = genesis(get_room_version(DEFAULT_ROOM_VERSION), signer, 0)
    rest = continue_from(room)
    for i in range(members):
        rest.add(EventDraft("m.room.member", user(i), {"membership": "join"}, user(i)))
    for i in range(messages):
        rest.add(message(i, members))
    return room.events, rest.events


async def persist_room(store: Store, first: list[Event], rest: list[Event], size: int) -> str:
    create = first[0]
    room = NewRoom(create.room_id, create.room_version.identifier, CREATOR, time_ms(), True)
    result = await store.persist_events([(e, None) for e in first], new_room=room)
    group = result.current_state_group
    for batch in chunks(rest, size):
        result = await store.persist_events([(batch[0], group)] + [(e, None) for e in batch[1:]])
        group = result.current_state_group
    return create.room_id


async def measure_mode(
    store: Store, sync: SyncService, room_id: str, definition: dict[str, Any], reads: int
) -> dict[str, Any]:
    request = SyncRequest(CREATOR, "BENCH", None, 0, False, SyncFilter(definition))
    body = b""

    async def once() -> float:
        nonlocal body
        start = time.perf_counter()
        answer = await sync.sync(request)
        body = canonical_json_text(answer).encode()
        return time.perf_counter() - start

    cold = []
    for _ in range(reads):
        clear_caches(store)
        cold.append(await once())
    warm = [await once() for _ in range(reads)]
    room = json.loads(body)["rooms"]["join"][room_id]
    state = room["state"]["events"]
    return {
        "cold_median_ms": ms(statistics.median(cold)),
        "warm_median_ms": ms(statistics.median(warm)),
        "bytes": len(body),
        "state_events": len(state),
        "member_events_in_state": sum(1 for e in state if e["type"] == "m.room.member"),
        "timeline_events": len(room["timeline"]["events"]),
    }


async def measure_engine(
    args: argparse.Namespace, engine: str, first: list[Event], rest: list[Event]
) -> dict[str, Any]:
    async with throwaway_store(engine, args.postgres_dsn) as store:
        start = time.perf_counter()
        room_id = await persist_room(store, first, rest, args.join_batch)
        seconds = time.perf_counter() - start
        notifier = Notifier()
        sync = SyncService(store, notifier, PushRulesService(store, notifier), time_ms)
        timeline = {"limit": args.limit}
        full_filter = {"room": {"timeline": timeline}}
        lazy_filter = {"room": {"timeline": timeline, "state": {"lazy_load_members": True}}}
        full = await measure_mode(store, sync, room_id, full_filter, args.reads)
        lazy = await measure_mode(store, sync, room_id, lazy_filter, args.reads)
        return {
            "setup": {
                "events": len(first) + len(rest),
                "persist_seconds": round(seconds, 3),
                "events_per_second": rate(len(first) + len(rest), seconds),
            },
            "full": full,
            "lazy": lazy,
            "bytes_ratio_full_to_lazy": round(full["bytes"] / max(1, lazy["bytes"]), 1),
        }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else DEFAULTS
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    log(f"building a room of {args.members} members in memory")
    first, rest = room_events(args.members, args.messages)
    engines: dict[str, Any] = {}
    for engine in args.engines:
        if engine == "postgres":
            why = await postgres_unreachable(args.postgres_dsn)
            if why is not None:
                engines[engine] = {"skipped": why}
                continue
        log(f"{engine}: persisting and syncing")
        engines[engine] = await measure_engine(args, engine, first, rest)
    summary = {
        engine: {
            mode: {k: result[mode][k] for k in ("cold_median_ms", "warm_median_ms", "bytes")}
            for mode in ("full", "lazy")
        }
        for engine, result in engines.items()
        if "skipped" not in result
    }
    return {
        "parameters": {
            "members": args.members,
            "messages": args.messages,
            "limit": args.limit,
            "reads": args.reads,
        },
        "summary": summary,
        "engines": engines,
    }
