"""Hostile input against the end-to-end encryption endpoints that tests/e2e_keys/
test_hostile_bodies.py (the five POST /keys endpoints) does not cover:

* ``PUT /sendToDevice/{eventType}/{txnId}`` — near-valid and hostile bodies, event types and
  transaction IDs (odd characters, NUL, lone surrogates, long segments, retried IDs);
* federation ``PUT /send/{txnId}`` whose ``edus`` are near-valid or hostile
  ``m.direct_to_device``, ``m.device_list_update`` and ``m.signing_key_update`` EDUs (senders of
  another server, wrong types, huge or nested values, missing fields), mixed with junk EDUs;
* signed federation ``POST user/keys/query``, ``POST user/keys/claim`` and
  ``GET user/devices/{userId}`` with hostile bodies and paths.

For every example: no 5xx; JSON with ``errcode`` + ``error`` on a 4xx; no ERROR logged by the
server; a refused request wrote nothing (row counts of every table unchanged); a ``/send``
answer has no "Internal error". Beyond that, each success is checked against a model of what it
must have written: the to-device messages in the inbox (and the EDUs in the federation outbox)
are exactly those the body asked for; an EDU delivers nothing unless it is well-formed, new
and its sender belongs to the origin; device-list and cross-signing news is recorded only for
the origin's own user who shares a room with us; a key query writes nothing; a claim only
removes one-time keys of the devices it names.

SQLite gets ``EXAMPLES`` examples per endpoint (hypothesis' ``max_examples`` × 2: 200 in the
default derandomized "ci" profile; sendToDevice 1.5 times, user/devices half that), PostgreSQL a
quarter. The figures are printed at the end. Because the random fuzz meets a value no database
can take (NUL, a key past PostgreSQL's b-tree limit, a non-ASCII digit) only now and then, and
the PostgreSQL sample is small, a deterministic sweep puts each such value in every key and
leaf of a valid body of each endpoint, on both engines; and each bug found is pinned by a plain
test ("found bugs" below).
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import string
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.crypto.canonical_json import encode_canonical_json, parse_json
from homeserver.federation.client import FederationUnreachable
from homeserver.federation.e2e_edus import MAX_ID_LENGTH
from homeserver.federation.xmatrix import authorization_header
from homeserver.types import domain_of, user_id_error
from tests.builders import create_public_room
from tests.federation.e2e_fed_helpers import cross_signing_key, device_keys, seed_keys
from tests.federation.received_helpers import Remote
from tests.fuzz import body_strategies as bs
from tests.fuzz.strategies import encode_segment
from tests.fuzz.test_endpoint_bodies import (
    Answer,
    Snapshot,
    _check_shape,
    _check_unchanged,
    _describe,
    _send,
    _table_names,
    assert_no_server_errors,
    engine_hypothesis_test,
)
from tests.harness import FIXED_NOW_MS, SERVER_NAME, TestServer, TestUser

#: Examples per endpoint on SQLite; PostgreSQL runs a quarter of that.
EXAMPLES = 2 * settings.default.max_examples
POSTGRES_EXAMPLES = max(EXAMPLES // 4, 20)

#: The fake remote server (a fixed name, so strategies can name its users; it is never
#: contacted: the device-list resyncs are stubbed).
REMOTE = "fuzzremote.example"
R_USER = f"@r:{REMOTE}"  # joined to alice's room
ALICE = f"@alice:{SERVER_NAME}"
BOB = f"@bob:{SERVER_NAME}"
#: alice's devices besides the one she sends with (known names, for the strategies).
ALICE_DEVICES = ("PHONE", "LAPTOP")
BOB_DEVICE = "BOBDEV"

#: The tables an EDU may touch; a federation transaction also stores its answer (elsewhere).
E2E_TABLES = (
    "device_inbox", "device_list_changes", "e2e_cross_signing_keys",
    "e2e_cross_signing_signatures", "e2e_device_keys", "e2e_fallback_keys", "e2e_one_time_keys",
    "federation_outbox", "received_to_device_messages", "remote_device_list_positions",
    "remote_device_lists", "to_device_txns",
)  # fmt: skip

# ----------------------------------------------------------------------------- the tally


@dataclass
class Tally:
    examples: int = 0
    server_errors: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errcodes: Counter[str] = field(default_factory=Counter)
    #: for EDUs: how many the model expected to take effect, and deliveries made.
    effects: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


_TALLY: dict[tuple[str, str], Tally] = {}


def _tally(endpoint: str, server: TestServer) -> Tally:
    return _TALLY.setdefault((endpoint, server.hs.store.db.engine), Tally())


def _record(endpoint: str, server: TestServer, answer: Answer) -> None:
    tally = _tally(endpoint, server)
    tally.examples += 1
    tally.statuses[answer.status] += 1
    if answer.status >= 500:
        tally.server_errors += 1
    if isinstance(answer.body, dict) and isinstance(answer.body.get("errcode"), str):
        tally.errcodes[f"{answer.status} {answer.body['errcode']}"] += 1


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if not _TALLY or reporter is None or capture is None:
        return
    lines = [f"e2e hostile input ({settings.get_current_profile_name()} profile):"]
    for (endpoint, engine), t in sorted(_TALLY.items()):
        effects = f"  {dict(t.effects)}" if t.effects else ""
        lines.append(
            f"  {endpoint:<22} {engine:<8} {t.examples:>5} examples  {t.server_errors} x 5xx"
            f"  {t.seconds:>5.1f}s  {dict(sorted(t.statuses.items()))}{effects}"
        )
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line)


# ----------------------------------------------------------------------------- the live state


@dataclass
class Live:
    alice: TestUser
    remote: Remote
    snapshot: Snapshot
    #: local user → device IDs (what a to-device message can reach).
    devices: dict[str, set[str]]
    #: sendToDevice transaction IDs (as routed) answered 200 once.
    txn_ids: set[str] = field(default_factory=set)
    #: m.direct_to_device message IDs the server recorded.
    message_ids: set[str] = field(default_factory=set)
    last_message_id: str | None = None


class FailingRemoteKeys:
    """Stands in for hs.remote_keys in device-list resyncs: the remote never answers."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def user_devices(self, user_id: str, timeout_s: float) -> dict[str, Any]:
        self.calls.append(user_id)
        raise FederationUnreachable("the fuzz remote is never reachable")


async def _live(server: TestServer) -> Live:
    live: Live | None = getattr(server, "_e2e_fuzz_live", None)
    if live is not None:
        return live
    hs = server.hs
    alice = await server.register("alice")
    bob = await server.register("bob")
    for device_id in ALICE_DEVICES:
        await server.login_device(alice, device_id)
    await server.login_device(bob, BOB_DEVICE)
    await seed_keys(hs, ALICE, "PHONE", one_time_key_ids=tuple(f"K{i}" for i in range(10)))
    remote = Remote(REMOTE)
    await remote.seed_key(hs)
    room_id = await create_public_room(server, alice)
    await remote.join(hs, room_id, "r")
    hs.e2e_edus.remote_keys = FailingRemoteKeys()  # type: ignore[assignment]
    devices: dict[str, set[str]] = {}
    for user_id in (ALICE, BOB):
        devices[user_id] = {d.device_id for d in await hs.store.users.get_devices(user_id)}
    db = hs.store.db
    live = Live(alice, remote, Snapshot(db, await _table_names(db)), devices)
    server._e2e_fuzz_live = live  # type: ignore[attr-defined]
    return live


_fresh_counter = itertools.count()


def _fresh(prefix: str = "fz") -> str:
    return f"{prefix}{next(_fresh_counter)}"


def _one_in(n: int) -> st.SearchStrategy[bool]:
    return st.sampled_from(range(n)).map(lambda i: i == n - 1)


Example = Callable[[TestServer, st.DataObject], Awaitable[None]]


def _engine_tests(endpoint: str, example: Example, weight: float = 1.0) -> dict[str, Any]:
    """Two hypothesis tests running ``example``: SQLite and PostgreSQL (a sample)."""
    tests: dict[str, Any] = {}
    for engine, count, marks in (
        ("sqlite", max(int(EXAMPLES * weight), 10), ()),
        ("postgres", max(int(POSTGRES_EXAMPLES * weight), 10), (pytest.mark.postgres,)),
    ):

        def make() -> Any:
            async def run(
                server: TestServer, caplog: pytest.LogCaptureFixture, data: st.DataObject
            ) -> None:
                started = time.monotonic()
                caplog.clear()
                try:
                    await example(server, data)
                    # Resyncs scheduled by device-list updates run in the background.
                    await server.hs.e2e_edus.wait_for_resyncs()
                finally:
                    _tally(endpoint, server).seconds += time.monotonic() - started
                assert_no_server_errors(caplog)

            return run

        name = f"test_{endpoint}_{engine}"
        tests[name] = engine_hypothesis_test(make(), name, engine, count, marks)
    return tests


def _parsed(body: bytes) -> Any:
    """The body as the server reads it, or None when it cannot be read."""
    try:
        value = parse_json(body)
        encode_canonical_json(value)
    except (ValueError, UnicodeError, RecursionError):
        return None
    return value


def _valid_user(value: Any) -> bool:
    return isinstance(value, str) and user_id_error(value, historical=True) is None


async def _new_inbox_rows(server: TestServer, after: int) -> list[tuple[str, str, Any]]:
    rows = await server.hs.store.db.fetchall(
        "SELECT user_id, device_id, message_json FROM device_inbox WHERE stream_id > ?", after
    )
    return _sorted_rows([(r[0], r[1], json.loads(r[2])) for r in rows])


def _expected_local(
    devices: dict[str, set[str]], messages: dict[str, Any], event_type: str, sender: str
) -> list[tuple[str, str, Any]]:
    """The inbox rows ``messages`` must make: a message named for a device wins over ``"*"``;
    only existing devices of our users get anything."""
    rows = []
    for user_id, by_device in messages.items():
        if user_id not in devices or not isinstance(by_device, dict):
            continue
        for device_id in devices[user_id]:
            content = by_device.get(device_id)
            if not isinstance(content, dict):  # an entry that is not a message is skipped
                content = by_device.get("*")
            if isinstance(content, dict):
                message = {"type": event_type, "sender": sender, "content": content}
                rows.append((user_id, device_id, message))
    return sorted(rows, key=lambda r: (r[0], r[1]))


def _sorted_rows(rows: list[tuple[str, str, Any]]) -> list[tuple[str, str, Any]]:
    return sorted(rows, key=lambda r: (r[0], r[1], json.dumps(r[2], sort_keys=True)))


# ----------------------------------------------------------------------------- strategies

_long = st.sampled_from([256, 2_000, 3_000, 7_000]).map(lambda n: "x" * n)
#: Hard to compress: a long segment PostgreSQL's b-tree cannot shrink below its row limit.
_long_random = st.sampled_from([3_000, 7_000]).map(
    lambda n: "".join(random.Random(n).choices(string.ascii_letters + string.digits, k=n))
)
#: IDs that a database cannot take as they are: NUL (PostgreSQL text refuses it), a key longer
#: than PostgreSQL's b-tree limit, digits that are not ASCII ("²".isdigit() but int("²") fails).
_nasty_ids = st.sampled_from(["a\x00b", "\x00", "²", "٣", "½"]) | _long_random

#: Already percent-encoded path segments that decoding and routing must survive.
_RAW = [
    "%00", "a%00b", "%FF", "%ED%A0%80", "%C0%AE", "%F0%9F%98%80", "%2F", "%zz", "%", "%20",
    "..", ".", "%2e%2e", "~", "+", "%0A", "%E2%80%AE", "%EF%BB%BF",
]  # fmt: skip


@dataclass(frozen=True)
class Segment:
    """A path segment: ``text`` percent-encoded by the test, or ``raw`` as it is."""

    text: str | None = None
    raw: str | None = None

    def encoded(self) -> str:
        return encode_segment(self.text) if self.text is not None else str(self.raw)

    def routed(self) -> str | None:
        """What the handler receives (None when it cannot be a valid value at all)."""
        if self.text is not None:
            try:
                self.text.encode("utf-8")
            except UnicodeEncodeError:
                return None
            return self.text
        try:
            return unquote_to_bytes(str(self.raw)).decode("utf-8")
        except UnicodeDecodeError:
            return None


_hostile_segments = st.one_of(
    st.builds(Segment, text=bs.short_edges),
    st.builds(Segment, raw=st.sampled_from(_RAW)),
    st.builds(Segment, text=_long | _long_random),
    st.builds(Segment, text=st.text(alphabet="/.%!@$#:?&=\x00a ", max_size=12)),
)


def _segments(valid: st.SearchStrategy[str], weight: int = 3) -> st.SearchStrategy[Segment]:
    return bs._weighted(st.builds(Segment, text=valid), _hostile_segments, weight)


_event_types = _segments(
    st.sampled_from(["m.room.encrypted", "m.room_key_request", "m.secret.send", "org.example.x"]),
    5,
)
#: Both ``None``: a fresh transaction ID; raw "REPEAT": the last one answered 200.
_txn_choices = bs._weighted(
    st.just(Segment(text=None, raw=None)),
    st.one_of(
        st.just(Segment(raw="REPEAT")),
        st.builds(Segment, text=_long_random | st.sampled_from(["", "t", "x" * 256])),
        _hostile_segments,
    ),
    2,
)

_device_keys_of = {
    ALICE: st.sampled_from([*ALICE_DEVICES, "*", "*", "GONE"]),
    BOB: st.sampled_from([BOB_DEVICE, "*"]),
}
_recipient_users = bs._weighted(
    st.sampled_from(
        [ALICE, ALICE, ALICE, BOB, f"@nobody:{SERVER_NAME}", R_USER, "@x:elsewhere.example",
         "@r:localhost:1", f"@ALICE:{SERVER_NAME}", f"@alice:{SERVER_NAME.upper()}"]
    ),
    bs.user_ids | bs.short_edges,
    4,
)  # fmt: skip
_any_devices = st.sampled_from(["*", "PHONE", "LAPTOP", BOB_DEVICE, "D1", ""]) | bs.short_edges

_olm_contents = bs.near_dict(
    optional={
        "algorithm": st.sampled_from(["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"]),
        "sender_key": st.sampled_from(["curve", ""]) | bs.short_edges,
        "ciphertext": st.dictionaries(
            st.sampled_from(["curve-PHONE", "x"]) | bs.short_edges,
            bs.near_dict(optional={"type": st.sampled_from([0, 1]), "body": st.text()}),
            max_size=2,
        ),
        "body": st.text(max_size=20) | bs.short_edges,
        "n": bs.big_numbers,
    }
)
#: to-device message contents: olm-shaped, random, or (rarely) too large (the limit is 64 KiB).
_contents = bs._weighted(
    bs.near(_olm_contents),
    st.sampled_from([65_400, 65_600, 200_000]).map(lambda n: {"x": "y" * n}),
    12,
)


@st.composite
def _by_device(draw: st.DrawFn, user_id: Any) -> Any:
    devices = _device_keys_of.get(user_id) if isinstance(user_id, str) else None
    keys = _any_devices if devices is None else bs._weighted(devices, _any_devices, 4)
    return draw(bs.near(st.dictionaries(keys, _contents, min_size=1, max_size=3), 8))


@st.composite
def _messages(draw: st.DrawFn) -> Any:
    users = draw(st.lists(_recipient_users, min_size=1, max_size=4, unique=True))
    return {u: draw(_by_device(u)) for u in users}


to_device_bodies = bs.near_valid_or_garbage(
    bs.near_dict(required={"messages": bs.near(_messages(), 10)})
)

# EDUs -------------------------------------------------------------------------------------

_senders = bs._weighted(
    st.sampled_from([R_USER, f"@sender:{REMOTE}", f"@ü:{REMOTE}"]),
    st.sampled_from(
        ["@r:elsewhere.example", f"@r:{REMOTE}.evil", f"@r:{REMOTE}:8448", f"@r:{REMOTE.upper()}",
         ALICE, f"@r\x00:{REMOTE}", f"r:{REMOTE}", REMOTE, f"@r:{REMOTE}\x00"]
    ) | bs.hostile,
    3,
)  # fmt: skip
_remote_users = bs._weighted(
    st.sampled_from([R_USER, R_USER, f"@lonely:{REMOTE}"]),
    st.sampled_from(["@r:elsewhere.example", ALICE, f"@r:{REMOTE}.evil", f"@r\x00:{REMOTE}"])
    | bs.hostile,
    3,
)
#: ``FRESH``: a new message ID; "REPEAT": the last one the server recorded.
_message_ids = bs._weighted(st.just(bs.FRESH), st.just("REPEAT") | _nasty_ids | bs.hostile, 3)
_stream_ids = bs._weighted(
    st.integers(0, 1_000),
    st.sampled_from(["12", "٣", "²", "1.5", "-1", "", "0x10", 2**63, 2**64, -(2**63) - 1, -5])
    | _nasty_ids
    | bs.hostile,
    3,
)
_remote_devices = bs._weighted(
    st.sampled_from(["RDEV", "RDEV2"]), _nasty_ids | bs.unicode_edges | bs.hostile, 3
)

to_device_edus = bs.near_dict(
    required={
        "sender": _senders,
        "type": st.sampled_from(["m.room.encrypted", "m.room_key_request"]),
        "message_id": _message_ids,
        "messages": _messages(),
    }
)


@st.composite
def _device_list_update(draw: st.DrawFn) -> Any:
    user_id = draw(_remote_users)
    device_id = draw(_remote_devices)
    keys_owner = user_id if isinstance(user_id, str) else R_USER
    keys_device = device_id if isinstance(device_id, str) else "RDEV"
    try:
        keys: Any = device_keys(keys_owner, keys_device)
    except TypeError:
        keys = {}
    return draw(
        bs.near_dict(
            required={
                "user_id": st.just(user_id),
                "device_id": st.just(device_id),
                "stream_id": _stream_ids,
            },
            optional={
                "prev_id": st.lists(_stream_ids, max_size=2),
                "deleted": st.booleans(),
                "device_display_name": bs.unicode_edges,
                "keys": bs.near(st.just(keys)),
            },
        )
    )


@st.composite
def _signing_key_update(draw: st.DrawFn) -> Any:
    user_id = draw(_remote_users)
    owner = user_id if isinstance(user_id, str) else R_USER
    master = cross_signing_key(owner, "master", draw(st.sampled_from(["M1", "M2"])))
    self_signing = cross_signing_key(owner, "self_signing", "S1")
    mutated = st.sampled_from([master, self_signing, {**master, "usage": "master"}]).flatmap(
        lambda key: bs.near_dict(
            required={k: st.just(v) for k, v in key.items()},
            optional={"signatures": bs.hostile, "junk": bs.hostile},
        )
    )
    return draw(
        bs.near_dict(
            required={
                "user_id": st.just(user_id),
                "master_key": bs.near(st.just(master) | mutated),
            },
            optional={
                "self_signing_key": bs.near(st.just(self_signing) | mutated),
                "user_signing_key": bs.hostile,
            },
        )
    )


_junk_edus = st.sampled_from(
    [
        "edu", None, 1, [], {}, {"edu_type": "m.typing"}, {"edu_type": ["m.direct_to_device"]},
        {"edu_type": "m.typing", "content": {"room_id": "!x:y", "user_id": R_USER}},
        {"edu_type": "m.direct_to_device"}, {"edu_type": "m.device_list_update", "content": []},
        {"edu_type": "m.signing_key_update", "content": "x"}, {"content": {"sender": R_USER}},
    ]
) | bs.hostile  # fmt: skip


def _edu_lists(edu_type: str, contents: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    edu = bs.near_dict(required={"edu_type": st.just(edu_type), "content": bs.near(contents, 10)})
    return st.lists(bs._weighted(edu, _junk_edus, 5), min_size=1, max_size=4)


# ----------------------------------------------------------------------------- sendToDevice


async def _send_to_device(server: TestServer, data: st.DataObject) -> None:
    live = await _live(server)
    hs = server.hs
    value = bs.substitute(data.draw(to_device_bodies, label="body"), _fresh)
    event_type = data.draw(_event_types, label="event type")
    txn = data.draw(_txn_choices, label="txn")
    if txn.raw == "REPEAT":
        txn = Segment(text=sorted(live.txn_ids)[-1]) if live.txn_ids else Segment(text="t0")
    elif txn.text is None and txn.raw is None:
        txn = Segment(text=_fresh("txn"))
    body = bs.serialize(value)
    path = f"/_matrix/client/v3/sendToDevice/{event_type.encoded()}/{txn.encoded()}"
    where = f"PUT {path[:300]} body={_describe(body)}"
    inbox_position = await hs.store.device_inbox.get_position()
    outbox_top = await hs.store.db.fetchval("SELECT COALESCE(MAX(id), 0) FROM federation_outbox")
    before = await live.snapshot.take(None)
    answer = await _send(
        server, "PUT", path, body, {"Authorization": f"Bearer {live.alice.access_token}"}
    )
    _record("sendToDevice", server, answer)
    after = await live.snapshot.take(None)
    if len(path) > 8000:
        # aiohttp's parser refuses a request line this long before any handler (plain text).
        assert answer.status in (400, 414), where
        _check_unchanged(where, before, after)
        return
    _check_shape(where, answer, ())
    if answer.status != 200:
        _check_unchanged(where, before, after)
        return
    routed_type, routed_txn = event_type.routed(), txn.routed()
    assert routed_type and routed_txn, f"{where}: accepted an unusable path"
    parsed = _parsed(body)
    assert isinstance(parsed, dict) and isinstance(parsed.get("messages"), dict), where
    messages: dict[str, Any] = parsed["messages"]
    new_rows = await _new_inbox_rows(server, inbox_position)
    outbox = await hs.store.db.fetchall(
        "SELECT destination, payload FROM federation_outbox WHERE id > ?", outbox_top
    )
    if routed_txn in live.txn_ids:
        assert not new_rows and not outbox, f"{where}: a retried transaction delivered again"
        _check_unchanged(where, before, after)
        return
    live.txn_ids.add(routed_txn)
    expected = _expected_local(live.devices, messages, routed_type, ALICE)
    assert _sorted_rows(new_rows) == _sorted_rows(expected), where
    # Remote recipients: one or more m.direct_to_device EDUs per server, carrying exactly
    # the messages for that server's users.
    wanted: dict[str, dict[str, Any]] = {}
    for user_id, by_device in messages.items():
        if _valid_user(user_id) and domain_of(user_id) != SERVER_NAME and by_device:
            wanted.setdefault(domain_of(user_id), {})[user_id] = by_device
    sent: dict[str, dict[str, dict[str, Any]]] = {}
    for destination, payload_text in outbox:
        payload = json.loads(payload_text)
        assert payload["kind"] == "edu" and payload["edu_type"] == "m.direct_to_device", where
        content = payload["content"]
        assert content["sender"] == ALICE and content["type"] == routed_type, where
        for user_id, by_device in content["messages"].items():
            sent.setdefault(destination, {}).setdefault(user_id, {}).update(by_device)
    assert sent == wanted, where
    tally = _tally("sendToDevice", server)
    tally.effects["delivered"] += len(new_rows)
    tally.effects["queued_edus"] += len(outbox)


globals().update(_engine_tests("sendToDevice", _send_to_device, 1.5))


# ----------------------------------------------------------------------------- /send with EDUs


async def _send_transaction(
    server: TestServer, live: Live, endpoint: str, edus: Any, data: st.DataObject
) -> tuple[Any, dict[str, Any], dict[str, Any], str]:
    """PUT /send with ``edus`` from the fake remote; the parsed transaction (None when it
    cannot be read), the e2e tables' counts before and after, and a description."""
    envelope = {"origin": REMOTE, "origin_server_ts": FIXED_NOW_MS, "pdus": [], "edus": edus}
    if not data.draw(_one_in(10), label="unreadable allowed"):
        envelope = bs.readable(envelope)
    body = bs.serialize(envelope)
    parsed = _parsed(body)
    path = f"/_matrix/federation/v1/send/{_fresh('ftxn')}"
    header = authorization_header(
        live.remote.signing_key, "PUT", path, REMOTE, server.hs.server_name, parsed
    )
    before = await live.snapshot.take(None)
    answer = await _send(server, "PUT", path, body, {"Authorization": header})
    _record(endpoint, server, answer)
    after = await live.snapshot.take(None)
    where = f"PUT {path} body={_describe(body)}"
    _check_shape(where, answer, ("pdus",))
    if answer.status != 200:
        _check_unchanged(where, before, after)
        return None, before, after, where
    assert answer.body == {"pdus": {}}, f"{where} -> {answer.text[:300]}"
    assert "Internal error" not in answer.text, where
    assert isinstance(parsed, dict), where
    return parsed, before, after, where


def _unchanged_except(
    where: str, before: dict[str, Any], after: dict[str, Any], allowed: set[str]
) -> None:
    _check_unchanged(
        where,
        {t: before[t] for t in E2E_TABLES},
        {t: after[t] for t in E2E_TABLES},
        frozenset(allowed),
    )


def _edus_of(parsed: dict[str, Any], edu_type: str) -> list[dict[str, Any]]:
    return [
        e["content"]
        for e in parsed.get("edus", [])
        if isinstance(e, dict)
        and e.get("edu_type") == edu_type
        and isinstance(e.get("content"), dict)
    ]


async def _edu_to_device(server: TestServer, data: st.DataObject) -> None:
    live = await _live(server)
    hs = server.hs
    contents = data.draw(_edu_lists("m.direct_to_device", to_device_edus), label="edus")

    def message_id(value: Any) -> Any:
        if value is bs.FRESH:
            return _fresh("mid")
        if value == "REPEAT":
            return live.last_message_id or "mid-none"
        return value

    edus = [
        {**e, "content": {**e["content"], "message_id": message_id(e["content"]["message_id"])}}
        if isinstance(e, dict)
        and isinstance(e.get("content"), dict)
        and "message_id" in e["content"]
        else e
        for e in contents
    ]
    inbox_position = await hs.store.device_inbox.get_position()
    parsed, before, after, where = await _send_transaction(
        server, live, "edu_direct_to_device", edus, data
    )
    if parsed is None:
        return
    # The model: in order, each well-formed EDU whose sender is the origin's user and whose
    # message ID is new delivers to our users' existing devices; anything else delivers nothing.
    expected: list[tuple[str, str, Any]] = []
    recorded = 0
    for content in _edus_of(parsed, "m.direct_to_device"):
        sender, message_type = content.get("sender"), content.get("type")
        mid, messages = content.get("message_id"), content.get("messages")
        if not (
            _valid_user(sender)
            and domain_of(sender) == REMOTE
            and isinstance(message_type, str)
            and message_type
            and isinstance(mid, str)
            and 0 < len(mid) <= MAX_ID_LENGTH
            and "\x00" not in mid  # an ID no database can index is refused
            and isinstance(messages, dict)
        ):
            continue
        recorded += 1
        if mid in live.message_ids:
            continue
        live.message_ids.add(mid)
        live.last_message_id = mid
        # Each EDU is its own delivery: two EDUs for one device are two messages.
        expected += _expected_local(live.devices, messages, message_type, sender)
    new_rows = await _new_inbox_rows(server, inbox_position)
    assert _sorted_rows(new_rows) == _sorted_rows(expected), where
    allowed = {"received_to_device_messages", "device_inbox"} if recorded else set()
    _unchanged_except(where, before, after, allowed)
    tally = _tally("edu_direct_to_device", server)
    tally.effects["well_formed"] += recorded
    tally.effects["delivered"] += len(new_rows)


globals().update(_engine_tests("edu_direct_to_device", _edu_to_device))


async def _changed_users_since(server: TestServer, position: int) -> set[str]:
    rows = await server.hs.store.db.fetchall(
        "SELECT DISTINCT user_id FROM device_list_changes WHERE stream_id > ?", position
    )
    return {r[0] for r in rows}


async def _remote_list_users(server: TestServer) -> set[str]:
    rows = await server.hs.store.db.fetchall(
        "SELECT user_id FROM remote_device_lists UNION SELECT user_id FROM"
        " remote_device_list_positions"
    )
    return {r[0] for r in rows}


def _concerns_r(parsed: dict[str, Any], edu_type: str) -> int:
    """How many EDUs of the type name the origin's user who shares our room."""
    return sum(1 for c in _edus_of(parsed, edu_type) if c.get("user_id") == R_USER)


async def _edu_device_list(server: TestServer, data: st.DataObject) -> None:
    live = await _live(server)
    edus = data.draw(_edu_lists("m.device_list_update", _device_list_update()), label="edus")
    position = await server.hs.store.device_lists.get_position()
    parsed, before, after, where = await _send_transaction(
        server, live, "edu_device_list_update", edus, data
    )
    if parsed is None:
        return
    concerning = _concerns_r(parsed, "m.device_list_update")
    changed = await _changed_users_since(server, position)
    # Only the origin's own user who shares a room with us is recorded, at most once an EDU.
    assert changed <= {R_USER}, f"{where}: recorded {changed}"
    assert after["device_list_changes"] - before["device_list_changes"] <= concerning, where
    assert await _remote_list_users(server) <= {R_USER}, where
    allowed = (
        {"device_list_changes", "remote_device_lists", "remote_device_list_positions"}
        if concerning
        else set()
    )
    _unchanged_except(where, before, after, allowed)
    _tally("edu_device_list_update", server).effects["recorded"] += len(changed)


globals().update(_engine_tests("edu_device_list_update", _edu_device_list))


async def _edu_signing_key(server: TestServer, data: st.DataObject) -> None:
    live = await _live(server)
    edus = data.draw(_edu_lists("m.signing_key_update", _signing_key_update()), label="edus")
    position = await server.hs.store.device_lists.get_position()
    parsed, before, after, where = await _send_transaction(
        server, live, "edu_signing_key_update", edus, data
    )
    if parsed is None:
        return
    concerning = _concerns_r(parsed, "m.signing_key_update")
    changed = await _changed_users_since(server, position)
    assert changed <= {R_USER}, f"{where}: recorded {changed}"
    stored = await server.hs.store.e2e_keys.get_cross_signing_keys([R_USER])
    for usage, key in stored.get(R_USER, {}).items():
        # Whatever was stored is a key of that user for that usage (never the user-signing key).
        assert usage in ("master", "self_signing"), where
        assert key.get("user_id") == R_USER and usage in key.get("usage", []), where
    rows = await server.hs.store.db.fetchall("SELECT DISTINCT user_id FROM e2e_cross_signing_keys")
    assert {r[0] for r in rows} <= {ALICE, R_USER}, where
    allowed = {"device_list_changes", "e2e_cross_signing_keys"} if concerning else set()
    _unchanged_except(where, before, after, allowed)
    _tally("edu_signing_key_update", server).effects["recorded"] += len(changed)


globals().update(_engine_tests("edu_signing_key_update", _edu_signing_key))


# ----------------------------------------------------------------------------- key queries

_query_users = bs._weighted(
    st.sampled_from([ALICE, ALICE, ALICE, BOB, f"@nobody:{SERVER_NAME}"]),
    st.sampled_from([R_USER, "@x:elsewhere.example", f"@alice:{SERVER_NAME}:8448"])
    | bs.user_ids
    | bs.unicode_edges,
    3,
)
_query_devices = bs._weighted(
    st.sampled_from(["PHONE", "PHONE", "LAPTOP", "GONE", BOB_DEVICE]),
    _nasty_ids | bs.short_edges,
    3,
)
_many = st.sampled_from([1_000, 5_000, 40_000])


@st.composite
def _many_devices(draw: st.DrawFn) -> list[str]:
    return [f"D{i}" for i in range(draw(_many))]


query_bodies = bs.near_valid_or_garbage(
    bs.near_dict(
        required={
            "device_keys": bs.near(
                st.dictionaries(
                    _query_users,
                    bs._weighted(
                        bs.near(st.lists(_query_devices, max_size=3) | st.none()),
                        _many_devices(),
                        8,
                    ),
                    min_size=1,
                    max_size=3,
                ),
                10,
            )
        },
        optional={"timeout": bs.big_numbers},
    )
)


@st.composite
def _many_claims(draw: st.DrawFn) -> dict[str, str]:
    return {f"D{i}": "signed_curve25519" for i in range(draw(_many))}


_algorithms = bs._weighted(
    st.just("signed_curve25519"),
    st.sampled_from(["curve25519", "", "x" * 300]) | _nasty_ids | bs.hostile,
    3,
)
#: Alice's devices with keys named often, others (and hostile IDs) sometimes.
_claimed_devices = st.tuples(
    st.fixed_dictionaries({"PHONE": _algorithms}, optional={"LAPTOP": _algorithms}),
    st.dictionaries(_query_devices, _algorithms, max_size=2),
).map(lambda t: {**t[1], **t[0]})
claim_bodies = bs.near_valid_or_garbage(
    bs.near_dict(
        required={
            "one_time_keys": bs.near(
                st.dictionaries(
                    _query_users,
                    bs._weighted(
                        bs.near(_claimed_devices),
                        _many_claims(),
                        8,
                    ),
                    min_size=1,
                    max_size=3,
                ),
                10,
            )
        },
        optional={"timeout": bs.big_numbers},
    )
)


async def _signed(
    server: TestServer, live: Live, method: str, path: str, body: bytes | None
) -> Answer:
    signed_content = None if body is None else _parsed(body)
    header = authorization_header(
        live.remote.signing_key, method, path, REMOTE, server.hs.server_name, signed_content
    )
    return await _send(server, method, path, body or b"", {"Authorization": header})


async def _federation_query(
    endpoint: str,
    server: TestServer,
    live: Live,
    method: str,
    path: str,
    body: bytes | None,
    success_keys: tuple[str, ...],
) -> tuple[Answer, dict[str, Any], dict[str, Any], str]:
    before = await live.snapshot.take(None)
    answer = await _signed(server, live, method, path, body)
    _record(endpoint, server, answer)
    after = await live.snapshot.take(None)
    where = f"{method} {path[:300]} body={_describe(body or b'')}"
    if len(path) > 8000:
        assert answer.status in (400, 414), where
    else:
        _check_shape(where, answer, success_keys)
    return answer, before, after, where


async def _keys_query(server: TestServer, data: st.DataObject) -> None:
    live = await _live(server)
    body = bs.serialize(data.draw(query_bodies, label="body"))
    answer, before, after, where = await _federation_query(
        "fed_user_keys_query", server, live, "POST", "/_matrix/federation/v1/user/keys/query",
        body, ("device_keys", "master_keys", "self_signing_keys"),
    )  # fmt: skip
    _check_unchanged(where, before, after)  # a query never writes
    if answer.status != 200:
        return
    asked = _parsed(body)["device_keys"]
    assert set(answer.body["device_keys"]) == set(asked), where
    for user_id, devices in answer.body["device_keys"].items():
        wanted = asked[user_id] or []
        assert not wanted or set(devices) <= set(wanted), where
        for device_id, keys in devices.items():
            assert device_id in live.devices.get(user_id, ()), where
            assert keys.get("device_id") == device_id and keys.get("user_id") == user_id, where
    assert "user_signing_keys" not in answer.body, where
    assert set(answer.body["master_keys"]) <= set(asked), where


globals().update(_engine_tests("fed_user_keys_query", _keys_query))


async def _refill_one_time_keys(server: TestServer) -> None:
    count = await server.hs.store.db.fetchval("SELECT COUNT(*) FROM e2e_one_time_keys")
    if count < 3:
        await seed_keys(
            server.hs, ALICE, "PHONE", one_time_key_ids=tuple(_fresh("K") for _ in range(10))
        )


async def _keys_claim(server: TestServer, data: st.DataObject) -> None:
    live = await _live(server)
    await _refill_one_time_keys(server)
    body = bs.serialize(data.draw(claim_bodies, label="body"))
    answer, before, after, where = await _federation_query(
        "fed_user_keys_claim", server, live, "POST", "/_matrix/federation/v1/user/keys/claim",
        body, ("one_time_keys",),
    )  # fmt: skip
    if answer.status != 200:
        _check_unchanged(where, before, after)
        return
    asked = _parsed(body)["one_time_keys"]
    claimed = answer.body["one_time_keys"]
    used = 0
    for user_id, devices in claimed.items():
        assert user_id in asked, where
        for device_id, keys in devices.items():
            assert device_id in asked[user_id], where
            assert len(keys) == 1, where
            (key_id,) = keys
            assert key_id.startswith(asked[user_id][device_id] + ":"), where
            used += 0 if keys[key_id].get("fallback") else 1
    # A claim takes one-time keys (one per device at most) and marks fallback keys used.
    assert 0 <= before["e2e_one_time_keys"] - after["e2e_one_time_keys"] <= used, where
    _check_unchanged(where, before, after, frozenset({"e2e_one_time_keys"}))
    _tally("fed_user_keys_claim", server).effects["claimed"] += sum(map(len, claimed.values()))


globals().update(_engine_tests("fed_user_keys_claim", _keys_claim))

_device_users = _segments(st.sampled_from([ALICE, ALICE, BOB, f"@nobody:{SERVER_NAME}", R_USER]))


async def _user_devices(server: TestServer, data: st.DataObject) -> None:
    live = await _live(server)
    user = data.draw(_device_users, label="user")
    path = f"/_matrix/federation/v1/user/devices/{user.encoded()}"
    answer, before, after, where = await _federation_query(
        "fed_user_devices", server, live, "GET", path, None, ("user_id", "stream_id", "devices")
    )
    _check_unchanged(where, before, after)
    if answer.status != 200:
        return
    routed = user.routed()
    assert answer.body["user_id"] == routed, where
    listed = {d["device_id"] for d in answer.body["devices"]}
    assert listed == live.devices.get(str(routed), set()), where
    assert "user_signing_key" not in answer.body, where


globals().update(_engine_tests("fed_user_devices", _user_devices, 0.5))


# ----------------------------------------------------------------------------- found bugs
# Each bug this fuzz found, pinned by a plain test (both engines). Before the fixes:
# 1. m.device_list_update with stream_id "²" ("²".isdigit() but int("²") fails): ERROR logged.
# 2. PostgreSQL: m.device_list_update whose device_id holds NUL or is a few kB of text (past
#    the b-tree key limit), and m.direct_to_device whose message_id does: ERROR logged.
# 3. PostgreSQL: federation user/keys/query and user/keys/claim naming a device ID or an
#    algorithm with NUL: a 500.
# 4. PostgreSQL: PUT /sendToDevice with a transaction ID of a few kB: a 500.

_LONG_ID = "".join(random.Random(7).choices(string.ascii_letters, k=3_000))


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith("homeserver")
    ]


async def _put_edus(server: TestServer, live: Live, edus: list[Any]) -> Answer:
    envelope = {"origin": REMOTE, "origin_server_ts": FIXED_NOW_MS, "pdus": [], "edus": edus}
    body = encode_canonical_json(envelope)
    return await _signed(server, live, "PUT", f"/_matrix/federation/v1/send/{_fresh()}", body)


def _update(device_id: Any, stream_id: Any, prev_id: Any) -> dict[str, Any]:
    content = {"user_id": R_USER, "device_id": device_id, "stream_id": stream_id}
    return {"edu_type": "m.device_list_update", "content": {**content, "prev_id": prev_id}}


@pytest.mark.parametrize(
    ("device_id", "stream_id", "prev_id"),
    [
        ("RDEV", "²", []),
        ("RDEV", "٣", []),
        ("RDEV", 2**63, []),
        ("RDEV", -1, []),
        ("RDEV", 5, ["½"]),
        ("a\x00b", 5, []),
        (_LONG_ID, 5, []),
    ],
)
async def test_unusable_device_list_update_is_dropped(
    server: TestServer,
    caplog: pytest.LogCaptureFixture,
    device_id: str,
    stream_id: Any,
    prev_id: Any,
) -> None:
    live = await _live(server)
    position = await server.hs.store.device_lists.get_position()
    answer = await _put_edus(server, live, [_update(device_id, stream_id, prev_id)])
    await server.hs.e2e_edus.wait_for_resyncs()
    assert (answer.status, answer.body) == (200, {"pdus": {}}), answer.text
    assert _errors(caplog) == []
    assert await server.hs.store.device_lists.get_position() == position
    # A usable update is still recorded.
    await _put_edus(server, live, [_update("RDEV", "12", [])])
    await server.hs.e2e_edus.wait_for_resyncs()
    assert await _changed_users_since(server, position) == {R_USER}
    assert _errors(caplog) == []


@pytest.mark.parametrize("message_id", ["a\x00b", _LONG_ID])
async def test_unusable_message_id_is_dropped(
    server: TestServer, caplog: pytest.LogCaptureFixture, message_id: str
) -> None:
    live = await _live(server)

    def edu(message_id: str, n: int) -> dict[str, Any]:
        content = {"sender": R_USER, "type": "m.room.encrypted", "message_id": message_id}
        return {
            "edu_type": "m.direct_to_device",
            "content": {**content, "messages": {ALICE: {"PHONE": {"n": n}}}},
        }

    position = await server.hs.store.device_inbox.get_position()
    answer = await _put_edus(server, live, [edu(message_id, 1), edu("good", 2)])
    assert (answer.status, answer.body) == (200, {"pdus": {}}), answer.text
    assert _errors(caplog) == []
    rows = await _new_inbox_rows(server, position)
    assert [(u, d, m["content"]) for u, d, m in rows] == [(ALICE, "PHONE", {"n": 2})]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("query", {"device_keys": {ALICE: ["a\x00b"]}}),
        ("claim", {"one_time_keys": {ALICE: {"a\x00b": "signed_curve25519"}}}),
        ("claim", {"one_time_keys": {ALICE: {"PHONE": "signed\x00curve25519"}}}),
    ],
)
async def test_federation_key_requests_with_nul_are_400(
    server: TestServer, caplog: pytest.LogCaptureFixture, path: str, body: Any
) -> None:
    live = await _live(server)
    before = await live.snapshot.take(None)
    answer = await _signed(
        server,
        live,
        "POST",
        f"/_matrix/federation/v1/user/keys/{path}",
        encode_canonical_json(body),
    )
    assert answer.status == 400, answer.text
    assert answer.body["errcode"] == "M_INVALID_PARAM"
    assert _errors(caplog) == []
    _check_unchanged(path, before, await live.snapshot.take(None))


@pytest.mark.parametrize(("length", "status"), [(255, 200), (256, 400), (3_000, 400)])
async def test_send_to_device_transaction_id_length(
    server: TestServer, caplog: pytest.LogCaptureFixture, length: int, status: int
) -> None:
    live = await _live(server)
    txn_id = "".join(random.Random(length).choices(string.ascii_letters, k=length))
    code, answer = await server.call(
        "PUT",
        f"/sendToDevice/m.room.encrypted/{txn_id}",
        live.alice,
        json={"messages": {ALICE: {"PHONE": {"n": 1}}}},
    )
    assert code == status, answer
    if status == 400:
        assert answer["errcode"] == "M_INVALID_PARAM"
    assert _errors(caplog) == []


# ----------------------------------------------------------------------------- a sweep
# Deterministically, every key and every leaf of a valid body replaced in turn by each value a
# database cannot take as it is (the random fuzz meets these only now and then, and the
# PostgreSQL sample is small).

_SWEEP_VALUES: list[Any] = ["a\x00b", _LONG_ID, "²", "", 2**63, -1, None]


def _sweep_positions(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths to every key (``(..., ("key", k))``) and every value (``(..., k)``)."""
    items = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list)
        else ()
    )  # fmt: skip
    for key, child in items:
        if isinstance(value, dict):
            yield (*prefix, ("key", key))
        yield (*prefix, key)
        yield from _sweep_positions(child, (*prefix, key))


def _swept(value: Any, path: tuple[Any, ...], new: Any) -> Any | None:
    copied = json.loads(json.dumps(value))
    target = copied
    for key in path[:-1]:
        target = target[key]
    last = path[-1]
    if isinstance(last, tuple):
        if not isinstance(new, str):
            return None  # object keys are strings
        target[new] = target.pop(last[1])
    else:
        target[last] = new
    return copied


def _sweep(template: Any) -> Iterator[Any]:
    for path in _sweep_positions(template):
        for new in _SWEEP_VALUES:
            body = _swept(template, path, new)
            if body is not None:
                yield body


def _check_answer(where: str, answer: Answer, caplog: pytest.LogCaptureFixture) -> None:
    if answer.status >= 400:
        _check_shape(where, answer, ())
    assert answer.status < 500, f"{where} -> {answer.status} {answer.text[:300]}"
    assert "Internal error" not in answer.text, where
    assert _errors(caplog) == [], where
    caplog.clear()


async def test_sweep_of_unusable_values(
    server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    live = await _live(server)
    encrypted = {"algorithm": "m.olm.v1.curve25519-aes-sha2", "ciphertext": {"k": {"type": 0}}}
    messages = {ALICE: {"PHONE": encrypted, "*": {}}, "@r:remote.example": {"D": {}}}
    for body in _sweep({"messages": messages}):
        path = f"/_matrix/client/v3/sendToDevice/m.room.encrypted/{_fresh()}"
        headers = {"Authorization": f"Bearer {live.alice.access_token}"}
        answer = await _send(server, "PUT", path, encode_canonical_json(body), headers)
        _check_answer(f"PUT {path} {body!r:.300}", answer, caplog)
    for value in _SWEEP_VALUES:
        for path in (f"m.x/{encode_segment(str(value))}", f"{encode_segment(str(value))}/t"):
            code, answer_body = await server.call(
                "PUT", f"/sendToDevice/{path}", live.alice, json={"messages": messages}
            )
            assert code < 500 and _errors(caplog) == [], (path, code, answer_body)
    edus = {
        "m.direct_to_device": {
            "sender": R_USER, "type": "m.room.encrypted", "message_id": "M",
            "messages": {ALICE: {"PHONE": encrypted}},
        },
        "m.device_list_update": {
            "user_id": R_USER, "device_id": "RDEV", "stream_id": 3, "prev_id": [2],
            "deleted": False, "device_display_name": "n", "keys": device_keys(R_USER, "RDEV"),
        },
        "m.signing_key_update": {
            "user_id": R_USER, "master_key": cross_signing_key(R_USER, "master", "M3"),
            "self_signing_key": cross_signing_key(R_USER, "self_signing", "S3"),
        },
    }  # fmt: skip
    for edu_type, content in edus.items():
        for swept in _sweep(content):
            if edu_type == "m.direct_to_device" and swept.get("message_id") == "M":
                swept["message_id"] = _fresh("sweep")
            answer = await _put_edus(server, live, [{"edu_type": edu_type, "content": swept}])
            await server.hs.e2e_edus.wait_for_resyncs()
            _check_answer(f"{edu_type} {swept!r:.300}", answer, caplog)
            assert answer.status == 200, answer.text
    queries = {
        "query": {"device_keys": {ALICE: ["PHONE", "LAPTOP"], BOB: []}},
        "claim": {"one_time_keys": {ALICE: {"PHONE": "signed_curve25519"}}},
    }
    for name, template in queries.items():
        for body in _sweep(template):
            path = f"/_matrix/federation/v1/user/keys/{name}"
            answer = await _signed(server, live, "POST", path, encode_canonical_json(body))
            _check_answer(f"POST {path} {body!r:.300}", answer, caplog)
        await _refill_one_time_keys(server)
    for value in _SWEEP_VALUES:
        path = f"/_matrix/federation/v1/user/devices/{encode_segment(str(value))}"
        answer = await _signed(server, live, "GET", path, None)
        _check_answer(f"GET {path}", answer, caplog)


# ----------------------------------------------------------------------------- guards


def test_the_strategies_reach_the_code() -> None:
    """The fuzz is not all refusals at the door: enough drawn bodies are well-formed."""

    @settings(max_examples=100, derandomize=True)
    @given(st.data())
    def draw(data: st.DataObject) -> None:
        body = data.draw(to_device_bodies)
        if isinstance(body, dict) and isinstance(body.get("messages"), dict):
            hits["to_device"] += any(u in (ALICE, BOB) for u in body["messages"])
        edu = data.draw(to_device_edus)
        if isinstance(edu, dict) and edu.get("sender") == R_USER:
            hits["edu_sender"] += 1
        update = data.draw(_device_list_update())
        if isinstance(update, dict) and update.get("user_id") == R_USER:
            hits["device_list"] += isinstance(update.get("stream_id"), int)

    hits: Counter[str] = Counter()
    draw()
    assert min(hits["to_device"], hits["edu_sender"], hits["device_list"]) > 15, hits
