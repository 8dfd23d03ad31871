"""``scripts/bench user_directory``: ``POST /user_directory/search`` over ``--users`` users, on
each engine.

Per engine, in a throw-away database (not timed): ``--users`` local users with display names
("<first> <last>", from small lists, so names repeat as in life), each created with their profile
as registration does; a public room whose creator is the searcher, which every other user joins
(``--join-batch`` joins persisted at a time, the directory following each join in its
transaction: ``joins_per_s`` says what that costs in all). The other users are in no room, so
the default visibility must leave them out.

Then each search term is searched ``--reads`` times through the directory service (the SQL and
the response body; no socket), default visibility and ``search_all_users``; medians and p90 are
reported with the result count and ``limited``. Terms: a one-letter prefix matching most users,
a last name, a full name, a user ID and a term nobody matches.

Benchmarks measure; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from signedjson.key import generate_signing_key

from benchmarks._common import (
    latency_summary,
    parse_engines,
    postgres_unreachable,
    rate,
    throwaway_store,
)
from benchmarks.core import (
    CREATOR,
    DEFAULT_POSTGRES_DSN,
    chunks,
    continue_from,
    genesis,
    user,
)
from homeserver.accounts.user_directory import UserDirectoryService
from homeserver.clock import time_ms
from homeserver.config.user_directory import UserDirectoryConfig
from homeserver.events.builder import Signer
from homeserver.events.draft import EventDraft
from homeserver.room_versions import DEFAULT_ROOM_VERSION, get_room_version
from homeserver.storage import NewRoom, Store

DEFAULTS = {"users": 10_000, "reads": 20}
QUICK = {"users": 300, "reads": 3}

_FIRST = [
    "Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory",
    "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Zoë",
]  # fmt: skip
_LAST = [
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Müller",
    "García", "Rossi", "Dubois", "Novak", "Kowalski", "Tanaka", "Nguyen", "Andersson", "Silva",
    "Ivanova", "O'Brien", "Schmidt", "Martin", "Moreau", "Fischer", "Weber", "Meyer", "Wagner",
]  # fmt: skip
TERMS = {
    "prefix_one_letter": "a",
    "last_name": "smith",
    "full_name": "alice smith",
    "user_id": "@user1234:bench.example.org",
    "no_match": "zzzzqx",
}


def display_name(i: int) -> str:
    return f"{_FIRST[i % len(_FIRST)]} {_LAST[(i // len(_FIRST)) % len(_LAST)]}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("user_directory")
    group.add_argument("--engines", default="sqlite,postgres", type=parse_engines)
    group.add_argument("--postgres-dsn", default=DEFAULT_POSTGRES_DSN)
    group.add_argument("--users", type=int, help="local users (10000)")
    group.add_argument("--joined", type=float, default=0.5, help="share joined to the room")
    group.add_argument("--join-batch", type=int, default=500, help="joins persisted at once")
    group.add_argument("--reads", type=int, help="timed searches per term and mode (20)")


def log(text: str) -> None:
    print(f"[bench user_directory] {text}", file=sys.stderr, flush=True)


async def seed(store: Store, users: int, joined: int, join_batch: int) -> dict[str, Any]:
    start = time.perf_counter()
    ids = [CREATOR] + [user(i) for i in range(users - 1)]
    for batch in [ids[i : i + 500] for i in range(0, len(ids), 500)]:
        async with store.db.transaction("bench_users") as txn:
            for n, user_id in enumerate(batch, start=ids.index(batch[0])):
                await store.users.create_user_txn(txn, user_id, None, created_ts=time_ms())
                await store.profiles.create_profile_txn(txn, user_id, display_name(n))
    users_seconds = time.perf_counter() - start

    signer = Signer(CREATOR.split(":", 1)[1], generate_signing_key("bench"))
    room = genesis(get_room_version(DEFAULT_ROOM_VERSION), signer, 0)
    create = room.events[0]
    new_room = NewRoom(create.room_id, create.room_version.identifier, CREATOR, time_ms(), True)
    result = await store.persist_events([(e, None) for e in room.events], new_room=new_room)
    rest = continue_from(room)
    for i in range(joined):
        rest.add(EventDraft("m.room.member", user(i), {"membership": "join"}, user(i)))
    start = time.perf_counter()
    group = result.current_state_group
    for batch in chunks(rest.events, join_batch):
        result = await store.persist_events([(batch[0], group)] + [(e, None) for e in batch[1:]])
        group = result.current_state_group
    join_seconds = time.perf_counter() - start
    return {
        "users_per_s": rate(users, users_seconds),
        "joins_per_s": rate(joined, join_seconds),
    }


async def measure(service: UserDirectoryService, reads: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, term in TERMS.items():
        samples = []
        answer: dict[str, Any] = {}
        for _ in range(reads):
            start = time.perf_counter()
            answer = await service.search(CREATOR, term, 10)
            samples.append(time.perf_counter() - start)
        out[name] = {
            "term": term,
            **latency_summary(samples),
            "results": len(answer["results"]),
            "limited": answer["limited"],
        }
    return out


async def measure_engine(args: argparse.Namespace, engine: str) -> dict[str, Any]:
    async with throwaway_store(engine, args.postgres_dsn) as store:
        joined = int((args.users - 1) * args.joined)
        log(f"{engine}: seeding {args.users} users, {joined} joined")
        seeded = await seed(store, args.users, joined, args.join_batch)
        log(f"{engine}: searching")
        default = UserDirectoryService(store, UserDirectoryConfig())
        everyone = UserDirectoryService(store, UserDirectoryConfig(search_all_users=True))
        return {
            "users": args.users,
            "joined_to_the_searchers_room": joined,
            **seeded,
            "default_visibility": await measure(default, args.reads),
            "search_all_users": await measure(everyone, args.reads),
        }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    defaults = QUICK if args.quick else DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    engines: dict[str, Any] = {}
    for engine in args.engines:
        if engine == "postgres":
            reason = await postgres_unreachable(args.postgres_dsn)
            if reason:
                engines[engine] = {"skipped": reason}
                continue
        engines[engine] = await measure_engine(args, engine)
    summary = {
        engine: {
            f"{mode}_{name}_median_ms": figures[mode][name]["median_ms"]
            for mode in ("default_visibility", "search_all_users")
            for name in TERMS
        }
        for engine, figures in engines.items()
        if "skipped" not in figures
    }
    return {
        "parameters": {
            "users": args.users,
            "joined": args.joined,
            "join_batch": args.join_batch,
            "reads": args.reads,
        },
        "engines": engines,
        "summary": summary,
    }
