"""The federation sender (homeserver/federation/sender.py) on both engines: batching, the same
transaction ID on every retry, backoff that survives a restart, catch-up after a restart,
permanent refusals dropped, and invites — over a stub client for the queue logic and over real
HTTPS against a fake remote server for the wire."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig
from homeserver.crypto.canonical_json import parse_json
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.events.ids import compute_event_id
from homeserver.events.signing import sign_event
from homeserver.federation.client import FederationHttpError, FederationUnreachable
from homeserver.federation.retry import healthy
from homeserver.federation.sender import (
    MAX_EDUS_PER_TRANSACTION,
    MAX_PDUS_PER_TRANSACTION,
    FederationSender,
)
from homeserver.room_versions import get_room_version
from homeserver.storage import Store
from homeserver.storage.outbox import RetryState
from tests.builders import create_room, generous_config
from tests.federation.fake_remote import LOOPBACK_WHITELIST, FakeRemoteServer, ReceivedRequest
from tests.harness import SERVER_NAME
from tests.harness import TestServer as Server

MIN_RETRY_MS = 60_000
MAX_RETRY_MS = 240_000


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(
        tmp_path,
        federation_verify_certificates=False,
        ip_range_whitelist=LOOPBACK_WHITELIST,
        federation={
            "destination_min_retry_interval": MIN_RETRY_MS,
            "destination_retry_multiplier": 2,
            "destination_max_retry_interval": MAX_RETRY_MS,
            "client_timeout": "10s",
        },
    )


# --- a stub client for the queue logic ----------------------------------------------------------
Answer = Callable[[str, str, Any], Any]


class StubClient:
    """Records PUTs; ``answer(destination, path, body)`` returns the JSON or an exception."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.answer: Answer = answer or (lambda d, p, b: {"pdus": {}})

    async def put_json(
        self, destination: str, path: str, content: Any, query: Any = None, *, timeout: float = 60
    ) -> Any:
        self.calls.append((destination, path, parse_json(_json(content))))
        result = self.answer(destination, path, content)
        if isinstance(result, Exception):
            raise result
        return result

    def sends(self, destination: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(txn ID, body) of each /send, in order."""
        prefix = "/_matrix/federation/v1/send/"
        return [
            (path[len(prefix) :], body)
            for d, path, body in self.calls
            if path.startswith(prefix) and destination in (None, d)
        ]


def _json(content: Any) -> str:
    from homeserver.crypto.canonical_json import canonical_json_text

    return canonical_json_text(content)


class Clock:
    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def make_sender(server: Server, client: Any, clock: Clock, store: Store | None = None) -> Any:
    hs = server.hs
    return FederationSender(
        store or hs.store,
        client,
        hs.config.federation,
        clock,
        hs.server_name,
        hs.signer,
        keyring=hs.keyring,
        jitter=lambda: 1.0,
    )


async def eventually(condition: Callable[[], Any], what: str) -> None:
    """Poll (bounded, not timed) until ``condition()`` is true."""
    for _ in range(1000):
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def room_with_remote_members(server: Server, *remote_users: str) -> tuple[str, str]:
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="public_chat")
    for user_id in remote_users:
        draft = EventDraft("m.room.member", user_id, {"membership": "join"}, user_id)
        await server.hs.sender.send(room, draft)
    return room, alice.user_id


async def send_texts(server: Server, room: str, sender: str, count: int) -> list[Event]:
    events = []
    for n in range(count):
        draft = EventDraft("m.room.message", sender, {"msgtype": "m.text", "body": str(n)})
        events.append(await server.hs.sender.send(room, draft))
    return events


async def queued(store: Store, destination: str | None = None) -> int:
    if destination is None:
        return int(await store.db.fetchval("SELECT COUNT(*) FROM federation_outbox"))
    return int(
        await store.db.fetchval(
            "SELECT COUNT(*) FROM federation_outbox WHERE destination = ?", destination
        )
    )


async def drained(store: Store, destination: str | None = None) -> bool:
    return await queued(store, destination) == 0


async def clear_outbox(store: Store) -> None:
    async with store.db.transaction("test_clear") as txn:
        await txn.execute("DELETE FROM federation_outbox")


def event_ids(body: dict[str, Any], events_by_body: dict[str, str]) -> list[str]:
    return [events_by_body[p["content"]["body"]] for p in body["pdus"]]


# --- batching -----------------------------------------------------------------------------------
async def test_transactions_hold_at_most_50_pdus_and_100_edus_in_queue_order(
    server: Server,
) -> None:
    store = server.hs.store
    room, alice = await room_with_remote_members(server, "@x:a.example")
    events = await send_texts(server, room, alice, 3)
    await clear_outbox(store)
    # 60 PDUs, 150 EDUs, 10 PDUs
    entries: list[tuple[str, Any]] = []
    entries += [
        ("a.example", {"kind": "pdu", "event_id": events[n % 3].event_id}) for n in range(60)
    ]
    entries += [
        ("a.example", {"kind": "edu", "edu_type": "m.typing", "content": {"n": n}})
        for n in range(150)
    ]
    entries += [("a.example", {"kind": "pdu", "event_id": events[0].event_id}) for _ in range(10)]
    async with store.db.transaction("test_enqueue") as txn:
        await store.outbox.enqueue_many_txn(txn, entries, now=1)
    client = StubClient()
    sender = make_sender(server, client, Clock())
    while await sender.send_next("a.example"):
        pass
    shapes = [(len(b["pdus"]), len(b["edus"])) for _, b in client.sends()]
    assert shapes == [(MAX_PDUS_PER_TRANSACTION, 0), (10, MAX_EDUS_PER_TRANSACTION), (10, 50)]
    sent_edus = [e["content"]["n"] for _, b in client.sends() for e in b["edus"]]
    assert sent_edus == list(range(150))
    assert all(b["origin"] == SERVER_NAME for _, b in client.sends())
    assert len({txn_id for txn_id, _ in client.sends()}) == 3
    assert await queued(store) == 0


# --- retries ------------------------------------------------------------------------------------
async def test_same_txn_id_and_content_on_every_retry_even_after_a_restart(
    server: Server,
) -> None:
    store = server.hs.store
    room, alice = await room_with_remote_members(server, "@x:a.example")
    await clear_outbox(store)
    await send_texts(server, room, alice, 2)
    clock = Clock()
    failing = StubClient(lambda d, p, b: FederationUnreachable("down"))
    sender = make_sender(server, failing, clock)
    assert await sender.send_next("a.example")
    await send_texts(server, room, alice, 1)  # queued after the first attempt: not in that txn
    clock.now += 5
    assert await sender.send_next("a.example")
    # a restart: new store caches, new sender
    restarted_store = Store(store.db)
    answering = StubClient(lambda d, p, b: FederationHttpError(502, None, "bad gateway", None))
    answering_sender = make_sender(server, answering, clock, restarted_store)
    clock.now += 5
    assert await answering_sender.send_next("a.example")
    working = StubClient()
    working_sender = make_sender(server, working, clock, restarted_store)
    assert await working_sender.send_next("a.example")
    attempts = failing.sends() + answering.sends() + working.sends()
    assert len(attempts) == 4
    assert len({txn_id for txn_id, _ in attempts}) == 1
    assert all(body == attempts[0][1] for _, body in attempts)
    assert [p["content"]["body"] for p in attempts[0][1]["pdus"]] == ["0", "1"]
    # the message queued meanwhile goes next, in a new transaction
    assert await working_sender.send_next("a.example")
    (next_txn, body), *_ = working.sends()[1:]
    assert next_txn != attempts[0][0] and [p["content"]["body"] for p in body["pdus"]] == ["0"]
    assert await queued(store) == 0


async def test_backoff_grows_caps_and_resets(server: Server) -> None:
    store = server.hs.store
    room, alice = await room_with_remote_members(server, "@x:a.example")
    await send_texts(server, room, alice, 1)
    clock = Clock()
    client = StubClient(lambda d, p, b: FederationHttpError(503, None, None, None))
    sender = make_sender(server, client, clock)
    intervals = []
    for _ in range(5):
        clock.now += 1
        await sender.send_next("a.example")
        state = await store.outbox.get_retry_state("a.example")
        assert state is not None
        intervals.append(state.retry_interval_ms)
    assert intervals == [
        MIN_RETRY_MS,
        2 * MIN_RETRY_MS,
        4 * MIN_RETRY_MS,
        MAX_RETRY_MS,
        MAX_RETRY_MS,
    ]
    assert state.failure_ts == 1_000_001 and state.retry_last_ts == clock.now
    assert await queued(store, "a.example") > 0  # nothing lost
    client.answer = lambda d, p, b: {"pdus": {}}
    await sender.send_next("a.example", state)
    assert await store.outbox.get_retry_state("a.example") == healthy("a.example")


@pytest.mark.parametrize("status", [429, 500, 401])
async def test_transient_answers_keep_the_entries(server: Server, status: int) -> None:
    store = server.hs.store
    room, alice = await room_with_remote_members(server, "@x:a.example")
    await send_texts(server, room, alice, 1)
    before = await queued(store, "a.example")
    client = StubClient(lambda d, p, b: FederationHttpError(status, "M_X", "no", None))
    await make_sender(server, client, Clock()).send_next("a.example")
    assert await queued(store, "a.example") == before
    state = await store.outbox.get_retry_state("a.example")
    assert state is not None and state.retry_interval_ms == MIN_RETRY_MS


@pytest.mark.parametrize("status", [400, 403, 404])
async def test_permanent_refusal_drops_the_transaction_and_moves_on(
    server: Server, status: int
) -> None:
    store = server.hs.store
    room, alice = await room_with_remote_members(server, "@x:a.example")
    await clear_outbox(store)
    await send_texts(server, room, alice, 2)
    answers = iter([FederationHttpError(status, "M_FORBIDDEN", "no", None), {"pdus": {}}])
    client = StubClient(lambda d, p, b: next(answers))
    sender = make_sender(server, client, Clock())
    # both messages are in the first transaction, which is refused: dropped, no backoff
    assert await sender.send_next("a.example")
    assert await queued(store, "a.example") == 0
    assert await store.outbox.get_retry_state("a.example") is None
    await send_texts(server, room, alice, 1)
    assert await sender.send_next("a.example")
    assert [p["content"]["body"] for p in client.sends()[1][1]["pdus"]] == ["0"]
    assert not await sender.send_next("a.example")


# --- the running sender: backoff across a restart, catch-up, recovery ---------------------------
async def test_backoff_survives_a_restart_until_the_destination_shows_signs_of_life(
    server: Server,
) -> None:
    store = server.hs.store
    room, alice = await room_with_remote_members(server, "@x:a.example")
    await send_texts(server, room, alice, 1)
    clock = Clock()
    down = StubClient(lambda d, p, b: FederationUnreachable("connection refused"))
    first = make_sender(server, down, clock)
    await first.start()
    await eventually(lambda: first.waiting_until("a.example") is not None, "first backoff")
    assert len(down.calls) == 1
    assert first.waiting_until("a.example") == clock.now + MIN_RETRY_MS
    await first.stop()
    # restart: the persisted backoff holds — the new sender waits without trying
    up = StubClient()
    second = make_sender(server, up, clock, Store(store.db))
    await second.start()
    await eventually(lambda: second.waiting_until("a.example") is not None, "resumed backoff")
    assert second.waiting_until("a.example") == clock.now + MIN_RETRY_MS
    assert up.calls == []
    # an inbound request from it: retried at once, delivered, backoff cleared
    second.on_destination_reachable("a.example")
    await eventually(lambda: drained(store, "a.example"), "delivery")
    assert len(up.calls) == 1
    await eventually(lambda: "a.example" not in second._queues, "the task ends")
    assert await store.outbox.get_retry_state("a.example") == healthy("a.example")
    await second.stop()


async def test_a_due_backoff_is_retried_by_itself(server: Server) -> None:
    store = server.hs.store
    room, alice = await room_with_remote_members(server, "@x:a.example")
    await send_texts(server, room, alice, 1)
    clock = Clock()
    await store.outbox.set_retry_state(RetryState("a.example", 1, clock.now - 10, 5))
    client = StubClient()
    sender = make_sender(server, client, clock)
    await sender.start()
    await eventually(lambda: drained(store, "a.example"), "delivery")
    await sender.stop()
    assert len(client.calls) == 1


async def test_catch_up_after_a_restart_delivers_everything_in_order(server: Server) -> None:
    store = server.hs.store
    room, alice = await room_with_remote_members(server, "@x:a.example", "@y:b.example")
    await clear_outbox(store)
    events = await send_texts(server, room, alice, 70)
    # a crash mid-transaction: the first 50 were put in a transaction that never got an answer
    crashed = StubClient(lambda d, p, b: FederationUnreachable("crash"))
    await make_sender(server, crashed, Clock()).send_next("a.example")
    await store.outbox.set_retry_state(healthy("a.example"))
    crashed_txn = crashed.sends()[0][0]
    client = StubClient()
    sender = make_sender(server, client, Clock())  # a new sender: what a restart starts
    await sender.start()
    await eventually(lambda: drained(store), "catch-up")
    by_body = {e.content["body"]: e.event_id for e in events}
    for destination in ("a.example", "b.example"):
        sends = client.sends(destination)
        delivered = [i for _, body in sends for i in event_ids(body, by_body)]
        assert delivered == [e.event_id for e in events], destination
    assert client.sends("a.example")[0][0] == crashed_txn
    # later events are woken by their commit
    (late,) = await send_texts(server, room, alice, 1)
    await eventually(lambda: drained(store), "live delivery")
    assert [body["pdus"][0]["content"]["body"] for _, body in client.sends()[-2:]] == ["0", "0"]
    assert {d for d, _, _ in client.calls[-2:]} == {"a.example", "b.example"}
    await sender.stop()
    assert late.event_id


async def test_one_transaction_in_flight_per_destination(server: Server) -> None:
    store = server.hs.store
    room, alice = await room_with_remote_members(server, "@x:a.example")
    await clear_outbox(store)
    in_flight = 0
    most = 0
    release = asyncio.Event()

    class SlowClient(StubClient):
        async def put_json(self, *args: Any, **kwargs: Any) -> Any:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            await release.wait()
            in_flight -= 1
            return await super().put_json(*args, **kwargs)

    client = SlowClient()
    sender = make_sender(server, client, Clock())
    await sender.start()
    await send_texts(server, room, alice, 3)  # three commits, three wakes
    await eventually(lambda: in_flight == 1, "first transaction in flight")
    release.set()
    await eventually(lambda: drained(store), "delivery")
    await sender.stop()
    assert most == 1
    delivered = [p["content"]["body"] for _, b in client.sends() for p in b["pdus"]]
    assert delivered == ["0", "1", "2"]


# --- invites over the stub ------------------------------------------------------------------
async def test_invite_refused_is_dropped_and_the_queue_moves_on(server: Server) -> None:
    store = server.hs.store
    room, alice = await room_with_remote_members(server, "@x:a.example")
    await server.hs.membership.invite(alice, room, "@dan:a.example")
    await send_texts(server, room, alice, 1)
    await clear_outbox_except_latest(store)

    def answer(d: str, path: str, body: Any) -> Any:
        if "/invite/" in path:
            return FederationHttpError(403, "M_FORBIDDEN", "not welcome", None)
        return {"pdus": {}}

    client = StubClient(answer)
    sender = make_sender(server, client, Clock())
    while await sender.send_next("a.example"):
        pass
    paths = [path.split("/")[4] for _, path, _ in client.calls]
    assert paths == ["invite", "send"]
    assert await store.outbox.get_retry_state("a.example") is None


async def clear_outbox_except_latest(store: Store) -> None:
    """Keep the rows of the last two commits (the invite's and the message's)."""
    rows = await store.db.fetchall("SELECT id, payload FROM federation_outbox ORDER BY id")
    keep_from = next(i for i, p in rows if parse_json(p)["kind"] == "invite")
    async with store.db.transaction("test_trim") as txn:
        await txn.execute("DELETE FROM federation_outbox WHERE id < ?", keep_from)


# --- over real HTTPS --------------------------------------------------------------------------
async def test_transaction_retried_over_https_with_the_same_id(
    server: Server, tmp_path: Path
) -> None:
    store = server.hs.store
    async with FakeRemoteServer(tmp_path) as remote:
        answers = [(500, {"errcode": "M_UNKNOWN", "error": "busy"}), {"pdus": {}}]

        async def on_send(request: ReceivedRequest) -> Any:
            return answers.pop(0)

        remote.add_handler("PUT", "/_matrix/federation/v1/send/{txn_id}", on_send)
        room, alice = await room_with_remote_members(server, f"@x:{remote.server_name}")
        await clear_outbox(store)
        (message,) = await send_texts(server, room, alice, 1)
        sender = make_sender(server, server.hs.federation_client, Clock())
        try:
            assert await sender.send_next(remote.server_name)
            state = await store.outbox.get_retry_state(remote.server_name)
            assert state is not None and state.retry_interval_ms == MIN_RETRY_MS
            assert await sender.send_next(remote.server_name, state)
        finally:
            await server.hs.federation_client.close()
    sends = remote.requests_to("/_matrix/federation/v1/send/")
    assert len(sends) == 2 and sends[0].raw_path == sends[1].raw_path
    assert sends[0].body == sends[1].body
    body = sends[1].json
    assert body["origin"] == SERVER_NAME
    assert body["pdus"] == [message.federation_json()]
    assert sends[1].x_matrix_origin(server.hs.signer.signing_key.verify_key, remote.server_name)
    assert await queued(store) == 0
    assert await store.outbox.get_retry_state(remote.server_name) == healthy(remote.server_name)


@pytest.mark.parametrize("forge", [False, True], ids=["signed", "forged-signature"])
async def test_invite_over_https_stores_the_invitees_signature(
    server: Server, tmp_path: Path, forge: bool
) -> None:
    hs = server.hs
    store = hs.store
    async with FakeRemoteServer(tmp_path) as remote:
        invited: list[ReceivedRequest] = []

        async def on_invite(request: ReceivedRequest) -> Any:
            invited.append(request)
            body = request.json
            event = body["event"]
            sign_event(
                get_room_version(body["room_version"]),
                event,
                remote.server_name,
                remote.signing_key,
            )
            if forge:
                sig = event["signatures"][remote.server_name][remote.key_id]
                event["signatures"][remote.server_name][remote.key_id] = "A" + sig[1:]
            return {"event": event}

        remote.add_handler("PUT", "/_matrix/federation/v2/invite/{room_id}/{event_id}", on_invite)
        alice = await server.register("alice")
        room = await create_room(
            server, alice, preset="private_chat", name="Plans", topic="t", room_version="11"
        )
        invitee = f"@bob:{remote.server_name}"
        await hs.membership.invite(alice.user_id, room, invitee)
        invite_id = await store.state.get_current_state_event_id(room, "m.room.member", invitee)
        assert invite_id is not None
        sender = make_sender(server, hs.federation_client, Clock())
        try:
            assert await sender.send_next(remote.server_name)
        finally:
            await hs.federation_client.close()
    assert len(invited) == 1
    request = invited[0]
    assert request.params == {"room_id": room, "event_id": invite_id}
    assert request.x_matrix_origin(hs.signer.signing_key.verify_key, remote.server_name)
    body = request.json
    assert body["room_version"] == "11"
    state_types = [e["type"] for e in body["invite_room_state"]]
    assert state_types[0] == "m.room.create"
    assert {"m.room.join_rules", "m.room.name", "m.room.topic"} <= set(state_types)
    # With the inviter's own membership, as Synapse sends it.
    assert [e["state_key"] for e in body["invite_room_state"] if e["type"] == "m.room.member"] == [
        alice.user_id
    ]
    create = body["invite_room_state"][0]
    assert "signatures" in create and "hashes" in create  # full PDUs, not stripped state
    assert await queued(store) == 0
    stored = parse_json(
        await store.db.fetchval("SELECT json FROM events WHERE event_id = ?", invite_id)
    )
    fresh = await Store(store.db).events.get_event(invite_id)
    cached = await store.events.get_event(invite_id)
    assert fresh is not None and cached is not None
    if forge:
        assert remote.server_name not in stored["signatures"]
    else:
        assert remote.key_id in stored["signatures"][remote.server_name]
        assert SERVER_NAME in stored["signatures"]
        # same event, same ID; the cache shows the new signature too
        assert compute_event_id(get_room_version("11"), stored) == invite_id
        assert remote.server_name in fresh.signatures
        assert remote.server_name in cached.signatures
