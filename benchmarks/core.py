"""The core benchmark: the hot paths under every room operation.

* ``build`` — events built and signed per second: :func:`build_event` for ``m.room.message``
  drafts in a room with realistic state, in memory, with a per-event breakdown (content hash,
  signature, event ID, validation, auth) measured separately on the same PDUs.
* ``persist`` (per engine) — ``store.persist_events`` on batches of consecutive messages, each
  batch continuing from the previous one; only the persist call is timed.
* ``big_room`` (per engine) — a public room grown to many members by joins: the rows stored for
  state per event, the largest group and the longest base chain, and the time to read the state
  at an event and the current state with the store's caches cleared first.

The events are built once, in memory, and persisted into each engine's own throw-away database
(SQLite in a temporary directory, PostgreSQL in a fresh schema dropped at the end).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from signedjson.key import generate_signing_key

from benchmarks._common import (
    DEFAULT_POSTGRES_DSN,
    ENGINES,
    latency_summary,
    ms,
    parse_engines,
    postgres_unreachable,
    rate,
    throwaway_store,
)
from homeserver.auth.rules import check_auth_rules
from homeserver.clock import time_ms
from homeserver.events.builder import Signer
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.events.hashes import add_content_hash
from homeserver.events.signing import sign_event
from homeserver.events.state_keys import CREATE_KEY
from homeserver.events.validation import validate_pdu
from homeserver.room_versions import DEFAULT_ROOM_VERSION, RoomVersion, get_room_version
from homeserver.rooms.event_builder import build_event, select_auth_events
from homeserver.rooms.sender import BatchBuilder
from homeserver.storage import NewRoom, Store

SERVER = "bench.example.org"
CREATOR = f"@creator:{SERVER}"


@dataclass(frozen=True, slots=True)
class CoreParams:
    room_version: str = DEFAULT_ROOM_VERSION
    #: (a) message events built in memory, in a room with ``build_members`` members.
    build_events: int = 5000
    build_members: int = 50
    #: the breakdown is measured on at most this many of the built events.
    breakdown_sample: int = 1000
    #: (b) batches of ``persist_batch_size`` messages persisted per engine.
    persist_batches: int = 200
    persist_batch_size: int = 10
    #: (c) members joined to the big room, persisted ``member_batch_size`` joins at a time.
    members: int = 10_000
    member_batch_size: int = 100
    #: reads per measurement in (c); the median is reported.
    reads: int = 7
    engines: tuple[str, ...] = ENGINES
    postgres_dsn: str = field(default=DEFAULT_POSTGRES_DSN, repr=False)


QUICK = {"build_events": 500, "persist_batches": 30, "members": 1000, "breakdown_sample": 200}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("core")
    group.add_argument("--engines", default=",".join(ENGINES), help="sqlite,postgres (default)")
    group.add_argument(
        "--postgres-dsn",
        default=DEFAULT_POSTGRES_DSN,
        help="PostgreSQL to benchmark in a throw-away schema (env HOMESERVER_BENCH_POSTGRES_DSN)",
    )
    group.add_argument("--room-version", default=DEFAULT_ROOM_VERSION)
    group.add_argument("--events", type=int, help="events built in (a)")
    group.add_argument("--batches", type=int, help="batches persisted in (b)")
    group.add_argument("--members", type=int, help="members of the big room in (c)")
    group.add_argument("--reads", type=int, help="reads per state-read measurement in (c)")


def params_from_args(args: argparse.Namespace) -> CoreParams:
    params = CoreParams()
    if getattr(args, "quick", False):
        params = replace(params, **QUICK)
    overrides: dict[str, Any] = {}
    for arg, name in (
        ("events", "build_events"),
        ("batches", "persist_batches"),
        ("members", "members"),
        ("reads", "reads"),
        ("room_version", "room_version"),
        ("postgres_dsn", "postgres_dsn"),
    ):
        value = getattr(args, arg, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "engines", None):
        overrides["engines"] = tuple(parse_engines(args.engines))
    params = replace(params, **overrides)
    params = replace(params, breakdown_sample=min(params.breakdown_sample, params.build_events))
    return params


def log(message: str) -> None:
    print(f"[bench core] {message}", file=sys.stderr, flush=True)


# --- rooms in memory -----------------------------------------------------------------------


def user(i: int) -> str:
    return f"@user{i}:{SERVER}"


def genesis(room_version: RoomVersion, signer: Signer, members: int) -> BatchBuilder:
    """A public room with the usual initial state and ``members`` joined users besides the
    creator, built in memory."""
    room_id = None if room_version.room_id_is_create_event_hash else f"!bench:{SERVER}"
    batch = BatchBuilder(room_version, signer, room_id)
    create: dict[str, Any] = {"room_version": room_version.identifier}
    if not room_version.implicit_room_creator:
        create["creator"] = CREATOR
    batch.add(EventDraft("m.room.create", CREATOR, create, ""))
    batch.add(EventDraft("m.room.member", CREATOR, {"membership": "join"}, CREATOR))
    users = {} if room_version.creators_have_infinite_power else {CREATOR: 100}
    batch.add(EventDraft("m.room.power_levels", CREATOR, {"users": users}, ""))
    batch.add(EventDraft("m.room.join_rules", CREATOR, {"join_rule": "public"}, ""))
    batch.add(
        EventDraft("m.room.history_visibility", CREATOR, {"history_visibility": "shared"}, "")
    )
    batch.add(EventDraft("m.room.name", CREATOR, {"name": "Benchmark room"}, ""))
    batch.add(EventDraft("m.room.topic", CREATOR, {"topic": "Where events are timed"}, ""))
    for i in range(members):
        batch.add(EventDraft("m.room.member", user(i), {"membership": "join"}, user(i)))
    return batch


def message(i: int, members: int) -> EventDraft:
    sender = user(i % members) if members else CREATOR
    return EventDraft("m.room.message", sender, {"msgtype": "m.text", "body": f"message {i}"})


def continue_from(batch: BatchBuilder) -> BatchBuilder:
    """A builder extending ``batch``'s room from its last event (its events list empty)."""
    return BatchBuilder(
        batch.room_version,
        batch.signer,
        batch.room_id,
        state=dict(batch.state),
        extremities=list(batch.extremities),
    )


def chunks(events: Sequence[Event], size: int) -> list[list[Event]]:
    return [list(events[i : i + size]) for i in range(0, len(events), size)]


def new_room(batch: BatchBuilder) -> NewRoom:
    assert batch.room_id is not None
    return NewRoom(batch.room_id, batch.room_version.identifier, CREATOR, time_ms(), is_public=True)


# --- (a) building --------------------------------------------------------------------------


def bench_build(params: CoreParams, signer: Signer) -> dict[str, Any]:
    room_version = get_room_version(params.room_version)
    room = genesis(room_version, signer, params.build_members)
    state = room.state
    prev = list(room.extremities)
    drafts = [message(i, params.build_members) for i in range(params.build_events)]
    built: list[Event] = []
    start = time.perf_counter()
    for draft in drafts:
        event = build_event(
            room_version,
            signer,
            draft,
            room_id=room.room_id,
            state=state,
            prev_events=prev,
            origin_server_ts=time_ms(),
        )
        prev = [event]
        built.append(event)
    elapsed = time.perf_counter() - start
    per_event_us = elapsed / len(built) * 1e6
    return {
        "events": len(built),
        "room_state_size": len(state),
        "seconds": round(elapsed, 3),
        "events_per_second": rate(len(built), elapsed),
        "per_event_us": round(per_event_us, 1),
        "breakdown_us": breakdown(room_version, signer, state, built[: params.breakdown_sample]),
    }


def breakdown(
    room_version: RoomVersion,
    signer: Signer,
    state: dict[tuple[str, str], Event],
    sample: list[Event],
) -> dict[str, Any]:
    """Each step of :func:`build_event` timed on its own, redoing it for already built events
    (average microseconds per event)."""
    totals = dict.fromkeys(("content_hash", "sign", "validate", "event_id", "auth"), 0.0)
    clock = time.perf_counter
    for built in sample:
        pdu = {k: v for k, v in built.pdu.items() if k not in ("hashes", "signatures")}
        t0 = clock()
        add_content_hash(pdu)
        t1 = clock()
        sign_event(room_version, pdu, signer.server_name, signer.signing_key)
        t2 = clock()
        validate_pdu(room_version, pdu)
        t3 = clock()
        event = Event(pdu, room_version)  # computes the reference hash (v3+)
        t4 = clock()
        draft = EventDraft(event.type, event.sender, event.content, event.state_key)
        auth_map = {e.state_tuple: e for e in select_auth_events(room_version, draft, state)}
        if CREATE_KEY in state:
            auth_map[CREATE_KEY] = state[CREATE_KEY]
        check_auth_rules(room_version, event, auth_map)
        t5 = clock()
        totals["content_hash"] += t1 - t0
        totals["sign"] += t2 - t1
        totals["validate"] += t3 - t2
        totals["event_id"] += t4 - t3
        totals["auth"] += t5 - t4
    n = max(len(sample), 1)
    result: dict[str, Any] = {k: round(v / n * 1e6, 1) for k, v in totals.items()}
    result["sample_events"] = len(sample)
    return result


# --- (b) persisting ------------------------------------------------------------------------


@dataclass(slots=True)
class PersistWorkload:
    genesis: BatchBuilder
    batches: list[list[Event]]


def persist_workload(params: CoreParams, signer: Signer) -> PersistWorkload:
    room_version = get_room_version(params.room_version)
    room = genesis(room_version, signer, params.build_members)
    messages = continue_from(room)
    for i in range(params.persist_batches * params.persist_batch_size):
        messages.add(message(i, params.build_members))
    return PersistWorkload(room, chunks(messages.events, params.persist_batch_size))


async def bench_persist(store: Store, work: PersistWorkload) -> dict[str, Any]:
    result = await store.persist_events(
        [(e, None) for e in work.genesis.events], new_room=new_room(work.genesis)
    )
    group = result.current_state_group
    latencies: list[float] = []
    for batch in work.batches:
        specs = [(batch[0], group)] + [(e, None) for e in batch[1:]]
        start = time.perf_counter()
        result = await store.persist_events(specs)
        latencies.append(time.perf_counter() - start)
        group = result.current_state_group
    total = sum(latencies)
    events = sum(len(b) for b in work.batches)
    return {
        "batches": len(work.batches),
        "batch_size": len(work.batches[0]) if work.batches else 0,
        "events": events,
        "seconds": round(total, 3),
        "events_per_second": rate(events, total),
        "batches_per_second": rate(len(work.batches), total),
        "batch_latency": latency_summary(latencies),
    }


# --- (c) a big room ------------------------------------------------------------------------


@dataclass(slots=True)
class BigRoomWorkload:
    genesis: BatchBuilder
    joins: list[Event]
    build_seconds: float


def big_room_workload(params: CoreParams, signer: Signer) -> BigRoomWorkload:
    room_version = get_room_version(params.room_version)
    room = genesis(room_version, signer, 0)
    joins = continue_from(room)
    start = time.perf_counter()
    for i in range(params.members):
        joins.add(EventDraft("m.room.member", user(i), {"membership": "join"}, user(i)))
    return BigRoomWorkload(room, joins.events, time.perf_counter() - start)


def clear_caches(store: Store) -> None:
    store.state.clear_cache()
    store.events.clear_cache()


async def timed_reads(store: Store, reads: int, fn: Any, *args: Any) -> tuple[dict[str, Any], Any]:
    cold: list[float] = []
    value: Any = None
    for _ in range(reads):
        clear_caches(store)
        start = time.perf_counter()
        value = await fn(*args)
        cold.append(time.perf_counter() - start)
    warm: list[float] = []
    for _ in range(reads):
        start = time.perf_counter()
        await fn(*args)
        warm.append(time.perf_counter() - start)
    return {
        "cold_median_ms": ms(statistics.median(cold)),
        "cold_max_ms": ms(max(cold)),
        "warm_median_ms": ms(statistics.median(warm)),
    }, value


async def state_storage_stats(store: Store, room_id: str) -> dict[str, Any]:
    """Rows stored for the room's state groups (``StateStore.group_stats``). "Snapshot" groups
    are those stored without a base (whole states); the others are deltas against a base."""
    stats = await store.state.group_stats(room_id)
    state_events = stats["state_events"]
    return {
        "state_groups": stats["groups"],
        "state_events": state_events,
        "rows_total": stats["rows"],
        "rows_per_state_event": round(stats["rows"] / max(state_events, 1), 2),
        "delta_groups": stats["delta_groups"],
        "delta_rows_avg": average(stats["delta_rows"], stats["delta_groups"], 2),
        "delta_rows_max": stats["delta_rows_max"],
        "snapshot_groups": stats["root_groups"],
        "snapshot_rows_avg": average(stats["root_rows"], stats["root_groups"], 1),
        "snapshot_rows_max": stats["root_rows_max"],
        "max_rows_in_one_group": stats["max_group_rows"],
        "max_base_chain_length": stats["max_base_chain_length"],
    }


def average(total: int, count: int, digits: int) -> float:
    return round(total / count, digits) if count else 0


async def chain_length(store: Store, event_id: str) -> int | None:
    """Base links read below the group after ``event_id`` (None for an outlier)."""
    groups = await store.state.get_state_group_for_events([event_id])
    if event_id not in groups:
        return None
    return len(await store.state.get_base_chain(groups[event_id])) - 1


async def bench_big_room(store: Store, work: BigRoomWorkload, params: CoreParams) -> dict[str, Any]:
    room_id = work.genesis.room_id
    assert room_id is not None
    result = await store.persist_events(
        [(e, None) for e in work.genesis.events], new_room=new_room(work.genesis)
    )
    group = result.current_state_group
    start = time.perf_counter()
    for batch in chunks(work.joins, params.member_batch_size):
        specs = [(batch[0], group)] + [(e, None) for e in batch[1:]]
        result = await store.persist_events(specs)
        group = result.current_state_group
    persist_seconds = time.perf_counter() - start

    reads: dict[str, Any] = {}
    probes = {"mid_event": work.joins[len(work.joins) // 2], "last_event": work.joins[-1]}
    for name, event in probes.items():
        timing, state = await timed_reads(
            store, params.reads, store.state.get_state_ids_at_event, event.event_id
        )
        reads[f"state_at_{name}"] = {
            **timing,
            "state_size": len(state or {}),
            "group_chain_length": await chain_length(store, event.event_id),
        }
    timing, current = await timed_reads(
        store, params.reads, store.state.get_current_state_ids, room_id
    )
    reads["current_state"] = {**timing, "state_size": len(current)}
    return {
        "members": params.members,
        "state_size": len(current),
        "setup": {
            "join_batch_size": params.member_batch_size,
            "persist_seconds": round(persist_seconds, 3),
            "joins_persisted_per_second": rate(len(work.joins), persist_seconds),
        },
        "state_storage": await state_storage_stats(store, room_id),
        "reads": reads,
    }


# --- the suite -----------------------------------------------------------------------------


async def run_core(params: CoreParams) -> dict[str, Any]:
    signer = Signer(SERVER, generate_signing_key("bench"))
    parameters = asdict(params)
    parameters.pop("postgres_dsn")
    parameters["engines"] = list(params.engines)
    output: dict[str, Any] = {"parameters": parameters}

    log(f"(a) building {params.build_events} message events in memory")
    output["build"] = bench_build(params, signer)

    log("preparing the events to persist (built in memory, not timed)")
    persist_work = persist_workload(params, signer)
    big_work = big_room_workload(params, signer)
    output["big_room_join_build"] = {
        "events": len(big_work.joins),
        "seconds": round(big_work.build_seconds, 3),
        "events_per_second": rate(len(big_work.joins), big_work.build_seconds),
    }

    engines: dict[str, Any] = {}
    for engine in params.engines:
        if engine == "postgres":
            why = await postgres_unreachable(params.postgres_dsn)
            if why is not None:
                log(f"WARNING: {why}; PostgreSQL SKIPPED")
                engines[engine] = {"skipped": why}
                continue
        result: dict[str, Any] = {"engine": engine}
        log(f"(b) {engine}: persisting {len(persist_work.batches)} batches")
        async with throwaway_store(engine, params.postgres_dsn) as store:
            result["persist"] = await bench_persist(store, persist_work)
        log(f"(c) {engine}: growing a room to {params.members} members")
        async with throwaway_store(engine, params.postgres_dsn) as store:
            result["big_room"] = await bench_big_room(store, big_work, params)
        engines[engine] = result
    output["engines"] = engines
    return output


async def run(args: argparse.Namespace) -> dict[str, Any]:
    return await run_core(params_from_args(args))
