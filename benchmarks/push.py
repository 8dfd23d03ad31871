"""``scripts/bench push``: push-rule evaluation per event in a room of ``--members`` local
members, on each engine.

Per engine, in a throw-away database: a public room with ``--members`` joined local users
besides its creator (built in memory, persisted ``--join-batch`` joins at a time, not timed),
``--pushers`` of them with an HTTP pusher; the evaluator's position is then moved past the
joins. Each of ``--messages`` messages (from rotating members, default rules everywhere, so
each notifies every other member) is persisted (timed: ``persist``, what a sender waits for)
and then evaluated by the background step alone (timed: ``evaluate``: reading the members and
rulesets, evaluating, writing the actions, the pusher jobs and the position in one
transaction). Reported: medians and p90 of both, and the rows written per event.

Benchmarks measure; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from signedjson.key import generate_signing_key

from benchmarks._common import measure_engines, ms, parse_engines, throwaway_store
from benchmarks.core import DEFAULT_POSTGRES_DSN, SERVER, chunks, continue_from, genesis, user
from homeserver.clock import time_ms
from homeserver.events.builder import Signer
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.push.evaluation import PushEvaluator
from homeserver.push.rules import PushRulesService
from homeserver.room_versions import DEFAULT_ROOM_VERSION, get_room_version
from homeserver.storage import NewRoom, Store
from homeserver.storage.pushers import Pusher
from homeserver.streams.notifier import Notifier

DEFAULTS = {"members": 1000, "messages": 30}
QUICK = {"members": 100, "messages": 5}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("push")
    group.add_argument("--engines", default="sqlite,postgres", type=parse_engines)
    group.add_argument("--postgres-dsn", default=DEFAULT_POSTGRES_DSN)
    group.add_argument("--members", type=int, help="joined local members besides the creator")
    group.add_argument("--messages", type=int, help="messages evaluated one at a time")
    group.add_argument("--pushers", type=int, default=100, help="members with an HTTP pusher")
    group.add_argument("--join-batch", type=int, default=100, help="joins persisted at once")


def log(text: str) -> None:
    print(f"[bench push] {text}", file=sys.stderr, flush=True)


def room_events(members: int, messages: int) -> tuple[list[Event], list[Event], list[Event]]:
    """Genesis, joins and messages, built in memory."""
    signer = Signer(SERVER, generate_signing_key("bench"))
    room = genesis(get_room_version(DEFAULT_ROOM_VERSION), signer, 0)
    rest = continue_from(room)
    for i in range(members):
        rest.add(EventDraft("m.room.member", user(i), {"membership": "join"}, user(i)))
    joins = list(rest.events)
    for i in range(messages):
        body = {"msgtype": "m.text", "body": f"message {i}"}
        rest.add(EventDraft("m.room.message", user(i % members), body))
    return room.events, joins, rest.events[len(joins) :]


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": ms(statistics.median(ordered)),
        "p90_ms": ms(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]),
    }


async def measure_engine(args: argparse.Namespace, engine: str) -> dict[str, Any]:
    first, joins, messages = room_events(args.members, args.messages)
    async with throwaway_store(engine, args.postgres_dsn) as store:
        create = first[0]
        room = NewRoom(create.room_id, create.room_version.identifier, first[0].sender, 0, True)
        result = await store.persist_events([(e, None) for e in first], new_room=room)
        group = result.current_state_group
        for batch in chunks(joins, args.join_batch):
            result = await store.persist_events(
                [(batch[0], group)] + [(e, None) for e in batch[1:]]
            )
            group = result.current_state_group
        for i in range(min(args.pushers, args.members)):
            pusher = Pusher(
                0, user(i), "http", "bench", f"key{i}", "B", "D", None, "en",
                {"url": "https://push.example.org/_matrix/push/v1/notify"}, 0,
            )  # fmt: skip
            await store.pushers.set_pusher(pusher, append=True)
        notifier = Notifier()
        evaluator = PushEvaluator(
            store, PushRulesService(store, notifier), notifier, time_ms, SERVER
        )
        await skip_past_joins(store)
        persist: list[float] = []
        evaluate: list[float] = []
        for event in messages:
            start = time.perf_counter()
            result = await store.persist_events([(event, group)])
            persist.append(time.perf_counter() - start)
            group = result.current_state_group
            start = time.perf_counter()
            await evaluator.process_pending()
            evaluate.append(time.perf_counter() - start)
        actions = await store.db.fetchval("SELECT COUNT(*) FROM event_push_actions")
        jobs = await store.db.fetchval("SELECT COUNT(*) FROM push_outbox")
        return {
            "persist": summary(persist),
            "evaluate": summary(evaluate),
            "actions_per_event": int(actions) / len(messages),
            "pusher_jobs_per_event": int(jobs) / len(messages),
        }


async def skip_past_joins(store: Store) -> None:
    """Joins notify nobody under the default rules; start the measured run after them."""
    top = await store.events.get_max_stream_ordering()
    position = await store.push_actions.get_evaluated_position()
    async with store.db.transaction("bench_skip") as txn:
        await store.push_actions.advance_evaluated_txn(txn, position, top)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else DEFAULTS
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    log(f"{args.members} members, {args.messages} messages per engine")
    engines = await measure_engines(args, measure_engine)
    return {
        "parameters": {
            "members": args.members,
            "messages": args.messages,
            "pushers": args.pushers,
        },
        "engines": engines,
    }
