"""Hostile bodies against the endpoints that write rooms, events and accounts: createRoom, room
upgrade, send, state, login, register and federation ``PUT /send/{txnId}`` (issue 6, item 5).

Each endpoint gets ``10 × max_examples`` hypothesis examples on SQLite (1,000 in the default
"ci" profile, 10,000 with ``--hypothesis-profile=deep``) and a fifth of that on PostgreSQL, all
in-process against one server per test. The bodies are mostly near-valid (tests/fuzz/
body_strategies.py), so they get past parsing into the services and the database. For every
example:

* no 5xx, no "Internal error" entry in a federation transaction's answer, and no ERROR logged
  by the server (a failure it caught and answered for);
* the answer is JSON: ``errcode`` + ``error`` on a 4xx (a UIA challenge may carry ``flows``
  instead), the endpoint's success shape on a 2xx;
* a refused request wrote nothing: the row count of every table, and the live room's row, are
  the same before and after (except what a refusal writes by design: the lifecycle history of
  an upgrade refused after taking the lock, the session a UIA challenge opens);
* a success wrote what it says: the room, event or account it names exists.

The figures (examples and 5xx per endpoint and engine, statuses, errcodes, accepted and refused
federation PDUs, seconds) are printed at the end of the module and written to
``bench-results/fuzz-endpoint-bodies.json``. Password hashing is made cheap for the module.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from argon2 import PasswordHasher
from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.accounts import login as login_module
from homeserver.config import HomeserverConfig
from homeserver.crypto import passwords
from homeserver.crypto.canonical_json import encode_canonical_json, parse_json
from homeserver.federation.xmatrix import authorization_header
from homeserver.room_versions import get_room_version
from homeserver.storage import Database
from homeserver.storage.users import hash_access_token
from tests.federation.received_helpers import Remote
from tests.fuzz import body_strategies as bs
from tests.harness import TestServer, TestUser, make_config

#: Examples per endpoint on SQLite: 1,000 in the "ci" profile (max_examples 100), 10,000 in
#: "deep" (max_examples 1000); PostgreSQL runs a fifth of that. (2,000 per endpoint cost three
#: and a half minutes of every run; the deep profile is where volume belongs.)
EXAMPLES = 10 * settings.default.max_examples
POSTGRES_EXAMPLES = max(EXAMPLES // 5, 50)

_HIGH = {"per_second": 100_000, "burst_count": 100_000}
RESULTS_FILE = Path(__file__).resolve().parents[2] / "bench-results" / "fuzz-endpoint-bodies.json"


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    # Rate limits would turn most examples into 429s before they reach the code under test.
    return make_config(
        tmp_path,
        enable_registration=True,
        enable_registration_without_verification=True,
        rc_room_creation=_HIGH,
        rc_message=_HIGH,
        rc_login=_HIGH,
        rc_registration=_HIGH,
        rc_joins=_HIGH,
        rc_invites=_HIGH,
        rc_to_device=_HIGH,
    )


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """argon2 at its real cost is ~50 ms a check: thousands of logins would take minutes. The
    fuzz is about the bodies, so hash with the cheapest parameters."""
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )
    login_module._dummy_hash.cache_clear()
    yield
    login_module._dummy_hash.cache_clear()


# ----------------------------------------------------------------------------- the tally


@dataclass
class Tally:
    examples: int = 0
    server_errors: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errcodes: Counter[str] = field(default_factory=Counter)
    #: federation: PDUs answered {} (accepted) and with an error.
    pdus: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


_TALLY: dict[tuple[str, str], Tally] = {}


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not _TALLY:
        return
    rows = [
        {
            "endpoint": endpoint,
            "engine": engine,
            "examples": t.examples,
            "5xx": t.server_errors,
            "seconds": round(t.seconds, 1),
            "statuses": {str(k): v for k, v in sorted(t.statuses.items())},
            "errcodes": dict(t.errcodes.most_common()),
            **({"pdus": dict(t.pdus)} if t.pdus else {}),
        }
        for (endpoint, engine), t in sorted(_TALLY.items())
    ]
    summary = {
        "profile": settings.get_current_profile_name(),
        "examples_per_endpoint_sqlite": EXAMPLES,
        "examples_per_endpoint_postgres": POSTGRES_EXAMPLES,
        "total_examples": sum(r["examples"] for r in rows),
        "total_5xx": sum(r["5xx"] for r in rows),
        "results": rows,
    }
    RESULTS_FILE.parent.mkdir(exist_ok=True)
    RESULTS_FILE.write_text(json.dumps(summary, indent=2) + "\n")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    lines = [f"hostile bodies ({summary['profile']} profile):"]
    lines += [
        f"  {r['endpoint']:<16} {r['engine']:<8} {r['examples']:>6} examples"
        f"  {r['5xx']} x 5xx  {r['seconds']:>6}s  {r['statuses']}"
        for r in rows
    ]
    lines.append(
        f"  total {summary['total_examples']} examples, {summary['total_5xx']} x 5xx"
        f" -> {RESULTS_FILE}"
    )
    # Fixture teardown runs under output capture; the figures are for the reader.
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line)


# ----------------------------------------------------------------------------- database checks


async def _table_names(db: Database) -> list[str]:
    if db.engine == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    else:
        sql = (
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
    return sorted(r[0] for r in await db.fetchall(sql))


class Snapshot:
    """Row counts of every table (one statement), and one room's row."""

    def __init__(self, db: Database, tables: list[str]) -> None:
        self.db = db
        self.tables = tables
        self.sql = "SELECT " + ", ".join(f'(SELECT COUNT(*) FROM "{t}")' for t in tables)

    async def take(self, room_id: str | None) -> dict[str, Any]:
        row = await self.db.fetchone(self.sql)
        assert row is not None
        counts: dict[str, Any] = {t: int(n) for t, n in zip(self.tables, row, strict=True)}
        if room_id is not None:
            counts["<room row>"] = await self.db.fetchone(
                "SELECT status, upgrade_lock_holder, replacement_room_id, current_state_group"
                " FROM rooms WHERE room_id = ?",
                room_id,
            )
        return counts


def _check_unchanged(
    where: str, before: dict[str, Any], after: dict[str, Any], allowed: frozenset[str] = frozenset()
) -> None:
    changed = {
        k: (before[k], after[k]) for k in before if before[k] != after[k] and k not in allowed
    }
    assert not changed, f"{where}: a refused request wrote {changed}"


# ----------------------------------------------------------------------------- requests


@dataclass
class Answer:
    status: int
    text: str
    body: Any


async def _send(
    server: TestServer,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
) -> Answer:
    status, text = await server.call_exact(
        method, path, data=body, headers={"Content-Type": "application/json", **headers}
    )
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    return Answer(status, text, parsed)


def _check_shape(where: str, answer: Answer, success_keys: tuple[str, ...]) -> None:
    """No 5xx; a JSON Matrix error on 4xx; the endpoint's success keys on 2xx."""
    status, body = answer.status, answer.body
    assert status < 500, f"{where} -> {status} {answer.text[:500]}"
    assert isinstance(body, dict), f"{where} -> {status} non-JSON-object {answer.text[:300]!r}"
    if status >= 400:
        if status == 401 and "flows" in body and "session" in body:
            return  # a user-interactive auth challenge (its first round has no errcode)
        assert isinstance(body.get("errcode"), str) and body["errcode"].startswith("M_"), (
            f"{where} -> {status} {answer.text[:300]}"
        )
        assert isinstance(body.get("error"), str), f"{where} -> {status} {answer.text[:300]}"
        return
    assert status == 200, f"{where} -> {status} {answer.text[:300]}"
    for key in success_keys:
        assert key in body, f"{where} -> 200 without {key!r}: {answer.text[:300]}"


def _describe(body: bytes) -> str:
    return repr(body[:400]) + (f"... ({len(body)} bytes)" if len(body) > 400 else "")


_fresh_counter = itertools.count()


def _one_in(n: int) -> st.SearchStrategy[bool]:
    # The last of n, not the first: hypothesis draws the simplest choice (index 0) far more
    # often than 1 in n.
    return st.sampled_from(range(n)).map(lambda i: i == n - 1)


def _fresh() -> str:
    return f"fz{next(_fresh_counter)}"


# ----------------------------------------------------------------------------- the fixture state


@dataclass
class Live:
    """What the examples of one test share: users, the room being written, the fake remote."""

    alice: TestUser
    room_id: str
    snapshot: Snapshot
    remote: Remote | None = None
    last_txn: str | None = None
    last_event_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


async def _new_room(server: TestServer, user: TestUser) -> str:
    answer = await server.call("POST", "/createRoom", user, json={"preset": "public_chat"})
    assert answer[0] == 200, answer
    return str(answer[1]["room_id"])


async def _live(server: TestServer) -> Live:
    live: Live | None = getattr(server, "_fuzz_live", None)
    if live is None:
        alice = await server.register("alice")
        await server.register("bob")
        db = server.hs.store.db
        live = Live(alice, await _new_room(server, alice), Snapshot(db, await _table_names(db)))
        server._fuzz_live = live  # type: ignore[attr-defined]
    return live


def assert_no_server_errors(caplog: pytest.LogCaptureFixture) -> None:
    """An error the server logged (a failure it caught and answered for) is a bug too."""
    logged = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith("homeserver")
    ]
    assert not logged, logged


def engine_hypothesis_test(
    run: Callable[..., Awaitable[None]], name: str, engine: str, count: int, marks: Any
) -> Any:
    """``run(server, caplog, data)`` as a hypothesis test named ``name`` of ``count`` examples
    on one database engine."""
    run.__name__ = run.__qualname__ = name
    test = given(data=st.data())(run)
    test = settings(max_examples=count)(test)
    return pytest.mark.parametrize("db_engine", [pytest.param(engine, marks=marks)], indirect=True)(
        test
    )


Example = Callable[[TestServer, st.DataObject], Awaitable[None]]


def _engine_tests(endpoint: str, example: Example) -> dict[str, Any]:
    """Two hypothesis tests running ``example``: SQLite (EXAMPLES) and PostgreSQL (a sample)."""
    tests: dict[str, Any] = {}
    for engine, count, marks in (
        ("sqlite", EXAMPLES, ()),
        ("postgres", POSTGRES_EXAMPLES, (pytest.mark.postgres,)),
    ):

        def make(engine: str = engine) -> Any:
            async def run(
                server: TestServer, caplog: pytest.LogCaptureFixture, data: st.DataObject
            ) -> None:
                tally = _TALLY.setdefault((endpoint, engine), Tally())
                started = time.monotonic()
                caplog.clear()
                try:
                    await example(server, data)
                finally:
                    tally.seconds += time.monotonic() - started
                assert_no_server_errors(caplog)

            return run

        name = f"test_{endpoint}_{engine}"
        tests[name] = engine_hypothesis_test(make(), name, engine, count, marks)
    return tests


def _record(endpoint: str, server: TestServer, answer: Answer) -> None:
    engine = server.hs.store.db.engine
    tally = _TALLY.setdefault((endpoint, engine), Tally())
    tally.examples += 1
    tally.statuses[answer.status] += 1
    if answer.status >= 500:
        tally.server_errors += 1
    if isinstance(answer.body, dict) and isinstance(answer.body.get("errcode"), str):
        tally.errcodes[f"{answer.status} {answer.body['errcode']}"] += 1


async def _client_request(
    endpoint: str,
    server: TestServer,
    live: Live,
    method: str,
    path: str,
    value: Any,
    user: TestUser | None,
    success_keys: tuple[str, ...],
) -> tuple[Answer, dict[str, Any], dict[str, Any], str]:
    body = bs.serialize(value)
    headers = {} if user is None else {"Authorization": f"Bearer {user.access_token}"}
    before = await live.snapshot.take(live.room_id)
    answer = await _send(server, method, path, body, headers)
    _record(endpoint, server, answer)
    after = await live.snapshot.take(live.room_id)
    where = f"{method} {path} body={_describe(body)}"
    _check_shape(where, answer, success_keys)
    return answer, before, after, where


def _q(value: str) -> str:
    return quote(value, safe="", errors="surrogatepass")


def _as_routed(segment: str) -> str:
    """A path segment as the handler sees it: percent-escapes that do not decode as UTF-8 (a
    lone surrogate's) are left as they came, by the URL parser."""
    try:
        segment.encode("utf-8")
    except UnicodeEncodeError:
        return _q(segment)
    return segment


# ----------------------------------------------------------------------------- createRoom


async def _create_room(server: TestServer, data: st.DataObject) -> None:
    live = await _live(server)
    value = bs.substitute(data.draw(bs.create_room_bodies, label="body"), _fresh)
    answer, before, after, where = await _client_request(
        "createRoom", server, live, "POST", "/_matrix/client/v3/createRoom", value, live.alice,
        ("room_id",),
    )  # fmt: skip
    if answer.status != 200:
        _check_unchanged(where, before, after)
        return
    room_id = answer.body["room_id"]
    assert after["rooms"] == before["rooms"] + 1, where
    room = await server.hs.store.rooms.get_room(room_id)
    assert room is not None and room.status == "active", where
    member = await server.hs.store.state.get_current_state_event(
        room_id, "m.room.member", live.alice.user_id
    )
    assert member is not None and member.content.get("membership") == "join", where


globals().update(_engine_tests("createRoom", _create_room))


# ----------------------------------------------------------------------------- upgrade


async def _upgrade(server: TestServer, data: st.DataObject) -> None:
    live = await _live(server)
    value = data.draw(bs.upgrade_bodies, label="body")
    old_room = live.room_id
    answer, before, after, where = await _client_request(
        "upgrade", server, live, "POST", f"/_matrix/client/v3/rooms/{_q(old_room)}/upgrade",
        value, live.alice, ("replacement_room",),
    )  # fmt: skip
    if answer.status != 200:
        # A refusal after the lock was taken records active -> upgrading -> active (the
        # lifecycle history is kept by design); the room must be active again.
        _check_unchanged(where, before, after, frozenset({"room_lifecycle_transitions"}))
        grew = after["room_lifecycle_transitions"] - before["room_lifecycle_transitions"]
        assert grew in (0, 2), f"{where}: {grew} lifecycle transitions recorded"
        return
    new_room = answer.body["replacement_room"]
    assert after["rooms"] == before["rooms"] + 1, where
    old = await server.hs.store.rooms.get_room(old_room)
    assert old is not None and old.status == "tombstoned", where
    assert old.replacement_room_id == new_room, where
    assert old.upgrade_lock_holder is None, where
    new = await server.hs.store.rooms.get_room(new_room)
    assert new is not None and new.status == "active", where
    assert new.room_version == value["new_version"], where
    live.room_id = new_room  # keep upgrading the successor


globals().update(_engine_tests("upgrade", _upgrade))


# ----------------------------------------------------------------------------- send


async def _send_event(server: TestServer, data: st.DataObject) -> None:
    live = await _live(server)
    event_type, content = data.draw(bs.send_requests, label="request")
    repeat = live.last_txn is not None and data.draw(_one_in(10), label="repeat")
    txn = live.last_txn if repeat else _fresh()
    assert txn is not None
    path = f"/_matrix/client/v3/rooms/{_q(live.room_id)}/send/{_q(event_type)}/{txn}"
    answer, before, after, where = await _client_request(
        "send", server, live, "PUT", path, content, live.alice, ("event_id",)
    )
    if answer.status != 200:
        _check_unchanged(where, before, after)
        return
    event_id = answer.body["event_id"]
    if repeat and live.last_event_id is not None:
        # The same transaction ID answers the first event again and writes nothing.
        assert event_id == live.last_event_id, where
        _check_unchanged(where, before, after)
        return
    event = await server.hs.store.events.get_event(event_id)
    assert event is not None and event.type == _as_routed(event_type), where
    live.last_txn, live.last_event_id = txn, event_id


globals().update(_engine_tests("send", _send_event))


# ----------------------------------------------------------------------------- state

#: A success of these may take the user's power or membership away (or end the room): the next
#: example gets a fresh room.
_DISRUPTIVE_STATE = {
    "m.room.power_levels", "m.room.member", "m.room.tombstone", "m.room.join_rules",
    "m.room.create", "m.room.server_acl",
}  # fmt: skip


async def _state(server: TestServer, data: st.DataObject) -> None:
    live = await _live(server)
    event_type, state_key, content = data.draw(bs.state_requests, label="request")
    path = f"/_matrix/client/v3/rooms/{_q(live.room_id)}/state/{_q(event_type)}/{_q(state_key)}"
    answer, before, after, where = await _client_request(
        "state", server, live, "PUT", path, content, live.alice, ("event_id",)
    )
    if answer.status != 200:
        _check_unchanged(where, before, after)
        return
    event_id = answer.body["event_id"]
    event_type, state_key = _as_routed(event_type), _as_routed(state_key)
    current = await server.hs.store.state.get_current_state_event(
        live.room_id, event_type, state_key
    )
    assert current is not None, where
    # A state PUT whose content equals the current one answers that event (as Synapse does).
    stored = await server.hs.store.events.get_event(event_id)
    assert stored is not None and stored.type == event_type, where
    if event_type in _DISRUPTIVE_STATE:
        live.room_id = await _new_room(server, live.alice)


globals().update(_engine_tests("state", _state))


# ----------------------------------------------------------------------------- login


async def _login_user(server: TestServer, live: Live) -> None:
    if "login_user" in live.extra:
        return
    user_id = f"@fuzzlogin:{server.hs.server_name}"
    await server.hs.store.users.create_user(
        user_id,
        passwords.hash_password(bs.LOGIN_PASSWORD),
        created_ts=server.hs.clock(),
    )
    live.extra["login_user"] = user_id


async def _login(server: TestServer, data: st.DataObject) -> None:
    live = await _live(server)
    await _login_user(server, live)
    value = data.draw(bs.login_bodies, label="body")
    answer, before, after, where = await _client_request(
        "login", server, live, "POST", "/_matrix/client/v3/login", value, None,
        ("user_id", "access_token", "device_id"),
    )  # fmt: skip
    if answer.status != 200:
        _check_unchanged(where, before, after)
        return
    assert answer.body["user_id"] == live.extra["login_user"], where
    # The token is stored (hashed) for that device; a reused device ID replaced its old token.
    owner = await server.hs.store.users.get_token_owner(
        hash_access_token(answer.body["access_token"])
    )
    assert owner is not None and owner.user_id == live.extra["login_user"], where
    assert owner.device_id == answer.body["device_id"], where


globals().update(_engine_tests("login", _login))


# ----------------------------------------------------------------------------- register


async def _register(server: TestServer, data: st.DataObject) -> None:
    live = await _live(server)
    await _login_user(server, live)  # an existing name for M_USER_IN_USE
    value = bs.substitute(data.draw(bs.register_bodies, label="body"), _fresh)
    answer, before, after, where = await _client_request(
        "register", server, live, "POST", "/_matrix/client/v3/register", value, None, ()
    )
    if answer.status == 401 and isinstance(answer.body, dict) and "flows" in answer.body:
        # The UIA challenge opens a session (that row is its purpose) and nothing else.
        _check_unchanged(where, before, after, frozenset({"ui_auth_sessions"}))
        return
    if answer.status != 200:
        _check_unchanged(where, before, after)
        return
    user_id = answer.body.get("user_id")
    assert isinstance(user_id, str), where
    assert after["users"] == before["users"] + 1, where
    assert await server.hs.store.users.get_user(user_id) is not None, where


globals().update(_engine_tests("register", _register))


# ----------------------------------------------------------------------------- federation send


async def _federation_live(server: TestServer, live: Live) -> Remote:
    """A fake remote server whose user ``r`` is joined to the live room (a fresh room when a
    PDU made them leave)."""
    remote = live.remote
    if remote is None:
        remote = Remote()
        await remote.seed_key(server.hs)
        live.remote = remote
        live.extra["fed_room"] = None
    room_id = live.extra["fed_room"]
    user = remote.user("r")
    if room_id is not None:
        member = await server.hs.store.state.get_current_state_event(room_id, "m.room.member", user)
        room = await server.hs.store.rooms.get_room(room_id)
        if (
            member is not None
            and member.content.get("membership") == "join"
            and room is not None
            and room.status == "active"
        ):
            return remote
    room_id = await _new_room(server, live.alice)
    await remote.join(server.hs, room_id)
    live.extra["fed_room"] = room_id
    return remote


def _try_sign(remote: Remote, version_id: str, pdu: dict[str, Any]) -> bool:
    try:
        remote.sign(get_room_version(version_id), pdu)
    except (ValueError, TypeError, UnicodeEncodeError, RecursionError, AttributeError):
        return False  # content no canonical JSON can hold: sent unsigned
    return True


async def _build_pdu(
    server: TestServer, remote: Remote, room_id: str, spec: bs.PduSpec, prev: list[str] | None
) -> tuple[Any, str | None]:
    """The PDU of ``spec`` on top of ``prev`` and its event ID when it was built cleanly."""
    if spec.kind == "garbage":
        return spec.raw, None
    sender = remote.user("r")
    if spec.kind == "member":
        event_type, state_key = "m.room.member", sender
    elif spec.kind == "state":
        event_type = spec.event_type
        state_key = sender if event_type == "m.room.member" else ""
    else:
        event_type, state_key = "m.room.message", None
    content = spec.content if isinstance(spec.content, dict) else {"body": "x"}
    room = await server.hs.store.rooms.get_room(room_id)
    assert room is not None
    version = room.room_version
    built = True
    try:
        event_id, pdu = await remote.build(
            server.hs, room_id, type=event_type, sender=sender, content=content,
            state_key=state_key, prev_events=prev,
        )  # fmt: skip
    except (ValueError, TypeError, UnicodeEncodeError, RecursionError):
        # Content no canonical JSON can hold (NaN, a lone surrogate): sent as it is, unsigned.
        built = False
        event_id, pdu = await remote.build(
            server.hs, room_id, type=event_type, sender=sender, content={},
            state_key=state_key, prev_events=prev,
        )  # fmt: skip
        pdu = {**pdu, "content": content}
    pdu = copy.deepcopy(pdu)  # the remote keeps its copy of what it built
    for name, value in spec.mutations:
        if value == bs.DROP:
            pdu.pop(name, None)
        else:
            pdu[name] = value
    # Semantic damage is signed again (correctly): the checks after the signature's must
    # catch it.
    semantic = {
        "sender_other_server": ("sender", "@mallory:other.example"),
        "unknown_prev": ("prev_events", ["$" + "B" * 43]),
        "future_depth": ("depth", 2**62),
    }.get(spec.damage)
    if semantic is not None:
        pdu[semantic[0]] = semantic[1]
    if spec.mutations or semantic is not None:
        signed = _try_sign(remote, version, pdu) if spec.resign or not spec.mutations else False
    else:
        signed = built
    if signed:
        sigs = pdu.get("signatures", {}).get(remote.name, {})
        if spec.damage == "hash" and isinstance(pdu.get("hashes"), dict):
            pdu["hashes"] = {"sha256": "A" * 43}
        elif spec.damage == "signature" and sigs:
            (kid,) = sigs
            sigs[kid] = "A" * 86
        elif spec.damage == "unsigned_sig":
            pdu["signatures"] = {remote.name: {"ed25519:other": "A" * 86}}
        elif spec.damage == "other_server_sig":
            pdu["signatures"] = {"other.example": sigs}
        elif spec.damage == "no_sig":
            pdu.pop("signatures", None)
    return pdu, event_id if (built and not spec.mutations and not spec.damage) else None


async def _federation_send(server: TestServer, data: st.DataObject) -> None:
    live = await _live(server)
    remote = await _federation_live(server, live)
    room_id = live.extra["fed_room"]
    specs = data.draw(st.lists(bs.pdu_specs, max_size=4), label="pdus")
    envelope = dict(data.draw(bs.txn_envelopes, label="envelope"))
    origin = data.draw(bs.txn_origins, label="origin")
    if not data.draw(_one_in(10), label="unreadable allowed"):
        # Nine in ten transactions parse, so that their PDUs are what gets tested.
        specs = [bs.readable(spec) for spec in specs]
        envelope = bs.readable(envelope)
    if origin == "ours":
        envelope["origin"] = remote.name
    elif origin == "other":
        envelope["origin"] = "other.example"
    elif origin == "hostile":
        envelope["origin"] = data.draw(bs.hostile, label="origin value")
    pdus: list[Any] = []
    prev: list[str] | None = None
    for spec in specs:
        pdu, clean_id = await _build_pdu(server, remote, room_id, spec, prev)
        pdus.append(pdu)
        if clean_id is not None:
            prev = [clean_id]
    pdus_value: Any = pdus
    if data.draw(_one_in(20), label="pdus hostile"):
        pdus_value = data.draw(bs.hostile, label="pdus value")
    envelope["pdus"] = pdus_value
    body = bs.serialize(envelope)
    # Sign what the server will parse, so that only the body is under test; a body the server
    # cannot parse is signed over nothing (it must be refused as not JSON all the same).
    try:
        signed_content: Any = parse_json(body)
        encode_canonical_json(signed_content)
    except (ValueError, UnicodeError, RecursionError):
        signed_content = None
    path = f"/_matrix/federation/v1/send/{_fresh()}"
    header = authorization_header(
        remote.signing_key, "PUT", path, remote.name, server.hs.server_name, signed_content
    )
    before = await live.snapshot.take(room_id)
    answer = await _send(server, "PUT", path, body, {"Authorization": header})
    _record("federation_send", server, answer)
    where = f"PUT {path} body={_describe(body)}"
    _check_shape(where, answer, ("pdus",))
    if answer.status != 200:
        after = await live.snapshot.take(room_id)
        _check_unchanged(where, before, after)
        return
    results = answer.body["pdus"]
    assert isinstance(results, dict), where
    pdu_tally = _TALLY[("federation_send", server.hs.store.db.engine)].pdus
    for event_id, result in results.items():
        assert isinstance(result, dict), where
        error = result.get("error")
        assert error is None or isinstance(error, str), where
        assert not (error or "").startswith("Internal error"), f"{where}: {event_id}: {error}"
        pdu_tally["accepted" if error is None else "refused"] += 1
        if error is None:
            continue
        # A refused PDU is absent, or stored rejected: never part of the room.
        row = await server.hs.store.db.fetchone(
            "SELECT rejected_reason FROM events WHERE event_id = ?", event_id
        )
        assert row is None or row[0] is not None, f"{where}: {event_id} stored accepted"
        in_state = await server.hs.store.db.fetchone(
            "SELECT 1 FROM current_state_events WHERE event_id = ?", event_id
        )
        assert in_state is None, f"{where}: refused {event_id} is current state"


globals().update(_engine_tests("federation_send", _federation_send))


# ----------------------------------------------------------------------------- guards


async def test_the_checks_can_fail(server: TestServer) -> None:
    """The oracles above are not vacuous: a write between two snapshots is seen, and a 5xx or
    a non-Matrix error body is refused."""
    live = await _live(server)
    before = await live.snapshot.take(live.room_id)
    await _new_room(server, live.alice)
    after = await live.snapshot.take(live.room_id)
    with pytest.raises(AssertionError, match="rooms"):
        _check_unchanged("createRoom", before, after)
    status, _ = await server.call(
        "PUT", f"/rooms/{_q(live.room_id)}/state/m.room.topic", live.alice, json={"topic": "t"}
    )
    assert status == 200
    with pytest.raises(AssertionError, match="room row"):
        _check_unchanged("state", after, await live.snapshot.take(live.room_id))
    for bad in (
        Answer(500, '{"errcode": "M_UNKNOWN", "error": "x"}', {"errcode": "M_UNKNOWN"}),
        Answer(400, "oops", None),
        Answer(400, '{"error": "x"}', {"error": "x"}),
        Answer(200, "{}", {}),
    ):
        with pytest.raises(AssertionError):
            _check_shape("x", bad, ("room_id",))


def test_strategies_reach_success() -> None:
    """A guard against a fuzz that only ever exercises refusals: the near-valid strategies
    produce valid bodies often enough (checked on the drawn values, not the server)."""

    @settings(max_examples=300, derandomize=True)
    @given(st.data())
    def draw(data: st.DataObject) -> None:
        value = data.draw(bs.upgrade_bodies)
        if isinstance(value, dict) and value.get("new_version") in bs.VALID_VERSIONS:
            hits["upgrade"] += 1
        value = data.draw(bs.create_room_bodies)
        if isinstance(value, dict) and not bs.contains(value, bs.Deep):
            hits["createRoom"] += 1

    hits: Counter[str] = Counter()
    draw()
    assert hits["upgrade"] > 30 and hits["createRoom"] > 30, hits
