"""``scripts/bench search``: ``POST /search`` over a room of ``--messages`` messages (100,000 by
default), on each engine.

Per engine: a fresh migrated store; one room (history visible to ``joined`` members, so every
candidate goes through the per-event visibility rules) made by alice, which bob joins; then
``--messages`` messages from alice, built and signed in memory and persisted in batches (each
indexed by event persistence, as a sent message is). Bodies are eight words drawn from a
Zipf-like vocabulary, so some words are rare and some are in most messages. Then bob searches,
``--reads`` times per figure (medians reported), through the search service itself (the HTTP
layer adds a JSON parse and serialisation on top):

* ``rare`` / ``common`` / ``frequent``: one word found in about 0.01 %, 2 % and 25 % of the
  messages, ordered by ``rank`` and by ``recent``, ``limit`` 10;
* ``two_words``: two common words together (both required), by rank;
* ``next_page``: the second page of ``frequent`` by ``recent`` (its ``next_batch``);
* ``with_context``: ``frequent`` by ``recent`` with ``event_context`` (5 before, 5 after,
  profiles).

Also reported: the time to persist (and index) the messages, and each query's ``count``. The
database is ``ANALYZE``d after the load, as autovacuum would have it in service.
Benchmarks measure; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections import Counter
from typing import Any

from signedjson.key import generate_signing_key

from benchmarks._common import (
    latency_summary,
    measure_engines,
    parse_engines,
    rate,
    throwaway_store,
)
from homeserver.clock import time_ms
from homeserver.events.builder import Signer
from homeserver.events.draft import EventDraft
from homeserver.room_versions import get_room_version
from homeserver.rooms.room_reads import RoomReader
from homeserver.rooms.search import RoomSearch
from homeserver.rooms.search_request import parse_search_request
from homeserver.rooms.sender import BatchBuilder
from homeserver.storage import NewRoom, Store

SERVER = "bench.example"
ALICE = f"@alice:{SERVER}"
BOB = f"@bob:{SERVER}"
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "do", "gu")


def _vocabulary() -> list[str]:
    words = [a + b for a in _SYLLABLES for b in _SYLLABLES]
    words += [a + b + c for a in _SYLLABLES for b in _SYLLABLES for c in _SYLLABLES[:6]]
    return words


def _bodies(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = _vocabulary()
    rng.shuffle(words)
    weights = [1 / (rank + 1) for rank in range(len(words))]
    return [" ".join(rng.choices(words, weights, k=8)) for _ in range(count)]


def _word_near(frequency: Counter[str], messages: int, share: float) -> str:
    """The word whose share of messages is closest to ``share``."""
    return min(frequency, key=lambda w: abs(frequency[w] / messages - share))


async def _build(store: Store, messages: list[str], batch_size: int) -> tuple[str, float]:
    version = get_room_version("10")
    signer = Signer(SERVER, generate_signing_key("bench"))
    batch = BatchBuilder(version, signer, f"!search:{SERVER}")
    batch.add(EventDraft("m.room.create", ALICE, {"room_version": "10", "creator": ALICE}, ""))
    batch.add(EventDraft("m.room.member", ALICE, {"membership": "join"}, ALICE))
    batch.add(EventDraft("m.room.power_levels", ALICE, {"users": {ALICE: 100}}, ""))
    batch.add(EventDraft("m.room.join_rules", ALICE, {"join_rule": "public"}, ""))
    visibility = {"history_visibility": "joined"}
    batch.add(EventDraft("m.room.history_visibility", ALICE, visibility, ""))
    batch.add(EventDraft("m.room.member", BOB, {"membership": "join"}, BOB))
    assert batch.room_id is not None
    room_id = batch.room_id
    await store.persist_events(
        [(e, None) for e in batch.events], new_room=NewRoom(room_id, "10", ALICE, time_ms())
    )
    started = time.perf_counter()
    for offset in range(0, len(messages), batch_size):
        batch.events = []
        for body in messages[offset : offset + batch_size]:
            batch.add(EventDraft("m.room.message", ALICE, {"msgtype": "m.text", "body": body}))
        group = int(
            await store.db.fetchval(
                "SELECT current_state_group FROM rooms WHERE room_id = ?", room_id
            )
        )
        await store.persist_events(
            [(batch.events[0], group), *((e, None) for e in batch.events[1:])]
        )
    seconds = time.perf_counter() - started
    # Planner statistics, as a live database has them (autovacuum would gather them later; a
    # PostgreSQL that has none after a bulk load picks plans 20 times slower for /context).
    async with store.db.transaction("bench_analyze") as txn:
        await txn.execute("ANALYZE")
    return room_id, seconds


async def _measure(args: argparse.Namespace, engine: str) -> dict[str, Any]:
    messages = _bodies(args.messages, args.seed)
    frequency: Counter[str] = Counter(w for body in messages for w in set(body.split()))
    rare = _word_near(frequency, args.messages, 0.0001)
    common = _word_near(frequency, args.messages, 0.02)
    frequent = _word_near(frequency, args.messages, 0.25)
    second = _word_near(frequency, args.messages, 0.05)
    async with throwaway_store(engine, args.postgres_dsn) as store:
        _, persist_seconds = await _build(store, messages, args.batch)
        search = RoomSearch(store, RoomReader(store, time_ms))

        def request(term: str, order_by: str, **extra: Any) -> Any:
            body = {"search_term": term, "order_by": order_by, **extra}
            return parse_search_request({"search_categories": {"room_events": body}})

        async def timed(term: str, order_by: str, batch: str | None = None, **extra: Any) -> Any:
            parsed = request(term, order_by, **extra)
            samples = []
            answer: dict[str, Any] = {}
            for _ in range(args.reads):
                started = time.perf_counter()
                answer = (await search.search(BOB, parsed, batch))["search_categories"][
                    "room_events"
                ]
                samples.append(time.perf_counter() - started)
            return {
                "term": term,
                "results": len(answer["results"]),
                "count": answer["count"],
                **latency_summary(samples),
            }, answer

        figures: dict[str, Any] = {}
        for name, term in (("rare", rare), ("common", common), ("frequent", frequent)):
            for order_by in ("rank", "recent"):
                figures[f"{name}_{order_by}"], _ = await timed(term, order_by)
        figures["two_words_rank"], _ = await timed(f"{common} {second}", "rank")
        _, first_page = await timed(frequent, "recent")
        figures["next_page_recent"], _ = await timed(
            frequent, "recent", first_page.get("next_batch")
        )
        context = {"before_limit": 5, "after_limit": 5, "include_profile": True}
        figures["with_context_recent"], _ = await timed(frequent, "recent", event_context=context)
        return {
            "engine": engine,
            "persist_and_index_seconds": round(persist_seconds, 2),
            "messages_per_second": rate(args.messages, persist_seconds),
            "queries": figures,
        }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engines", default="sqlite,postgres", type=parse_engines)
    parser.add_argument(
        "--postgres-dsn",
        default=os.environ.get(
            "HOMESERVER_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--messages", type=int, default=100_000, help="messages in the room")
    parser.add_argument("--batch", type=int, default=2000, help="messages persisted per batch")
    parser.add_argument("--reads", type=int, default=20, help="timed searches per figure")
    parser.add_argument("--seed", type=int, default=16, help="seed of the message bodies")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        args.messages, args.batch, args.reads = 2000, 500, 3
    results = await measure_engines(args, _measure)
    summary = {
        engine: {name: figure["median_ms"] for name, figure in result.get("queries", {}).items()}
        for engine, result in results.items()
    }
    return {
        "parameters": {"messages": args.messages, "reads": args.reads, "seed": args.seed},
        "summary_median_ms": summary,
        "engines": results,
    }
