"""Three ``homeserver run`` processes of one homeserver on one PostgreSQL schema and one Redis
(issue 17, "Done when"), requests spread over them:

* matrix-nio users, each on a different process: messages and a state change in a public room,
  an encrypted private room (the Megolm keys travel as to-device messages between processes),
  an upgrade of it with the auto-join, and encrypted messages in the replacement room;
* 50 upgrade requests of one room, racing over the three processes, give one replacement room;
* the 11th createRoom of a user inside the window is 429 whichever process gets it;
* Redis stopped and restarted under load: no 5xx, and a long-poll on one process is woken by a
  write on another within the fallback interval while Redis is down, and again once it is back;
* a process killed with SIGKILL under load loses no acknowledged write, its federation
  destination is taken over and a real Synapse receives every event once
  (tests/multiprocess/kill_scenario.py).

The module shares one cluster (tests/multiprocess/cluster.py), so the order matters: the Redis
test stops and restarts Redis, the last test kills a process. Waits poll with generous
deadlines and return as soon as the data is there, except where the test is about how soon
(the wake-ups).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nio import RoomPreset

from tests.federation.synapse_harness import SynapseServer, running_synapse
from tests.http_client import CS, Client, q
from tests.multiprocess.cluster import Cluster, RoundRobin, running_cluster
from tests.multiprocess.kill_scenario import killed_under_load
from tests.real_clients.nio_crypto import (
    MEGOLM,
    EncryptedUser,
    accept_invite,
    create_room_by_policy,
    exchange_encrypted,
    room_encryption_state,
)

pytestmark = pytest.mark.postgres

#: Generous per-wait deadline; waits return as soon as the data is there.
WAIT = 60.0
#: A long-poll woken by a write on another process must return within this many seconds, Redis
#: up or down: the fallback interval (about a second) with room for a busy 2-core machine. A
#: lost wake-up shows as the long-poll's full timeout (LONG_POLL_MS).
WAKE_DEADLINE = 6.0
LONG_POLL_MS = 30000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster
        # Every process must have stayed healthy (a crash shows as a traceback in its log).
        assert not cluster.tracebacks(), "\n".join(cluster.tracebacks())[-6000:]


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory, cluster: Cluster) -> Iterator[SynapseServer]:
    """A real Synapse peer, for the last test only (started when it asks)."""
    with running_synapse(tmp_path_factory.mktemp("synapse")) as server:
        yield server


@pytest.fixture
async def rr(cluster: Cluster) -> AsyncIterator[RoundRobin]:
    async with aiohttp.ClientSession() as session:
        yield RoundRobin(session, cluster.urls)


def _fail_with_logs(cluster: Cluster, error: BaseException) -> AssertionError:
    return AssertionError(f"{type(error).__name__}: {error}\n\n{cluster.log_tail()}")


# --- matrix-nio, one user per process ---


async def test_nio_users_on_three_processes(
    cluster: Cluster, rr: RoundRobin, tmp_path: Path
) -> None:
    names = ("alice", "bob", "carol")
    for name in names:
        await rr.register(name)
    users: list[EncryptedUser] = []
    try:
        async with asyncio.timeout(6 * WAIT):
            for index, name in enumerate(names):
                users.append(
                    await EncryptedUser.login(
                        cluster.urls[index],  # alice on proc0, bob on proc1, carol on proc2
                        f"@{name}:{cluster.server_name}",
                        f"{name}-pw-0123456789",
                        tmp_path / "stores" / name,
                        f"{name}'s nio",
                    )
                )
            await _public_room(users)
            await _encrypted_room_and_upgrade(rr, users)
    except BaseException as e:
        if isinstance(e, asyncio.CancelledError | KeyboardInterrupt):
            raise
        raise _fail_with_logs(cluster, e) from e
    finally:
        for user in users:
            await user.close()


async def _public_room(users: list[EncryptedUser]) -> None:
    """A public (unencrypted) room: created on proc0, joined on proc1 and proc2, a message
    from each seen by the others, a topic set on proc2 seen on proc0 and proc1."""
    alice, bob, carol = users
    created = await alice.client.room_create(
        preset=RoomPreset.public_chat,
        name="Three",
        power_level_override={"users": {carol.user_id: 50}},
    )
    room_id = str(getattr(created, "room_id", ""))
    assert room_id, created
    for user in (bob, carol):
        joined = await user.client.join(room_id)
        assert getattr(joined, "room_id", None) == room_id, joined
    everyone = {u.user_id for u in users}
    for user in users:
        await user.sync_until(
            lambda user=user: (
                room_id in user.client.rooms and everyone <= set(user.client.rooms[room_id].users)
            ),
            "everyone joined in the public room",
            WAIT,
        )
    bodies = set()
    for sender in users:
        body = f"plain hello from {sender.user_id}"
        bodies.add((room_id, body))
        sent = await sender.client.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": body}
        )
        assert getattr(sent, "event_id", None), sent
    for reader in users:  # each sees all three, its own too
        await reader.sync_until(
            lambda reader=reader: bodies <= set(reader.plaintext), "the three messages", WAIT
        )
    topic = await carol.client.room_put_state(room_id, "m.room.topic", {"topic": "spread out"})
    assert getattr(topic, "event_id", None), topic
    for reader in (alice, bob):
        await reader.sync_until(
            lambda reader=reader: reader.client.rooms[room_id].topic == "spread out",
            "carol's topic",
            WAIT,
        )
    assert {u.user_id for u in users} <= set(alice.client.rooms[room_id].users)
    for user in users:  # from here on, any plaintext message would be a failure
        user.plaintext.clear()


async def _encrypted_room_and_upgrade(rr: RoundRobin, users: list[EncryptedUser]) -> None:
    """A private room (encrypted by the server's policy): alice (proc0) ↔ bob (proc1), carol
    (proc2) decrypts alice's message too. alice upgrades it through the round robin: bob and
    carol are joined to the replacement, still encrypted, where bob ↔ carol talk and alice
    decrypts."""
    alice, bob, carol = users
    room_id = await create_room_by_policy(alice, [bob.user_id, carol.user_id], "secrets")
    token = str(alice.client.access_token)
    encryption = await room_encryption_state(rr.session, rr.urls[2], token, room_id)
    assert encryption.get("algorithm") == MEGOLM, encryption
    for user in (bob, carol):
        await accept_invite(user, room_id, WAIT)
    for user in (bob, carol):
        await alice.wait_joined(room_id, user.user_id, WAIT)
    there, _ = await exchange_encrypted(alice, bob, room_id, "before", WAIT)
    await carol.wait_decrypted(room_id, there, WAIT)

    body = await rr.ok("POST", f"{CS}/rooms/{q(room_id)}/upgrade", token, {"new_version": "11"})
    new_room = str(body["replacement_room"])
    for user in users:
        others = [u for u in users if u is not user]
        for other in others:
            await user.wait_joined(new_room, other.user_id, WAIT)
    encryption = await room_encryption_state(rr.session, rr.urls[1], token, new_room)
    assert encryption.get("algorithm") == MEGOLM, encryption
    there, back = await exchange_encrypted(bob, carol, new_room, "after the upgrade", WAIT)
    for body_text in (there, back):
        await alice.wait_decrypted(new_room, body_text, WAIT)
    for user in users:
        assert not user.undecryptable, f"{user.user_id}: {user}"
        assert not user.plaintext, f"{user.user_id}: {user}"


# --- 50 racing upgrades ---


async def test_fifty_racing_upgrades_give_one_replacement_room(
    cluster: Cluster, rr: RoundRobin
) -> None:
    """Five users with power to upgrade send ten requests each at once, spread round-robin
    over the three processes: every request answers the same replacement room, and the old
    room has one tombstone and one successor."""
    owner_id, owner = await rr.register("racer_owner")
    racers = [await rr.register(f"racer{i}") for i in range(4)]
    powers = {owner_id: 100, **{user_id: 100 for user_id, _ in racers}}
    room_id = (
        await rr.ok(
            "POST",
            f"{CS}/createRoom",
            owner,
            {
                "preset": "public_chat",
                "room_version": "10",
                "power_level_content_override": {"users": powers},
            },
        )
    )["room_id"]
    for _, token in racers:
        await rr.ok("POST", f"{CS}/join/{q(room_id)}", token, {})
    tokens = [owner, *(token for _, token in racers)]
    before = [set((await rr.ok("GET", f"{CS}/joined_rooms", t))["joined_rooms"]) for t in tokens]

    async def upgrade(token: str) -> tuple[int, Any]:
        return await rr.call(
            "POST", f"{CS}/rooms/{q(room_id)}/upgrade", token, {"new_version": "11"}, timeout=120
        )

    answered_before = dict(rr.answered)
    answers = await asyncio.gather(*(upgrade(tokens[i % 5]) for i in range(50)))
    spread = {i: rr.answered[i] - answered_before[i] for i in rr.answered}
    statuses = Counter(status for status, _ in answers)
    # Those that met the upgrade running (in any process) share its answer; on a busy machine
    # one may first read the room after the upgrade committed, and is refused naming the
    # replacement, as a request made after it would be (tests/rooms/upgrade/test_upgrade_lock.py).
    assert statuses[200] >= 1, answers[:5]
    late = [body for status, body in answers if status != 200]
    assert all(body.get("errcode") == "M_BAD_STATE" for body in late), late[:5]
    assert set(statuses) <= {200, 400}, statuses
    replacements = {body["replacement_room"] for _, body in answers}
    assert len(replacements) == 1, replacements
    (new_room,) = replacements
    assert all(n >= 16 for n in spread.values()), spread  # 50 round-robin: 17, 17, 16

    tombstone = await rr.ok("GET", f"{CS}/rooms/{q(room_id)}/state/m.room.tombstone/", owner)
    assert tombstone["replacement_room"] == new_room, tombstone
    for token, joined_before in zip(tokens, before, strict=True):
        joined = set((await rr.ok("GET", f"{CS}/joined_rooms", token))["joined_rooms"])
        # exactly one new room: the replacement (everyone auto-joined), no stray second one
        assert joined - joined_before == {new_room}, (joined - joined_before, new_room)


# --- rate limits shared ---


async def test_eleventh_create_room_is_429_on_every_process(rr: RoundRobin) -> None:
    """rc_room_creation: burst 10 (refilled far slower than the test). Ten rooms spread over the
    three processes are created; the 11th is refused by each of the three."""
    _, token = await rr.register("ratelimited")
    for i in range(10):
        status, body = await rr.call_on(i % 3, "POST", f"{CS}/createRoom", token, {})
        assert status == 200, (i, status, body)
    for index in range(3):
        status, body = await rr.call_on(index, "POST", f"{CS}/createRoom", token, {})
        assert status == 429, (index, status, body)
        assert body["errcode"] == "M_LIMIT_EXCEEDED", body
        assert body.get("retry_after_ms", 0) > 0, body
    # another user's budget is their own
    _, other = await rr.register("not_ratelimited")
    for index in range(3):
        status, body = await rr.call_on(index, "POST", f"{CS}/createRoom", other, {})
        assert status == 200, (index, status, body)


# --- Redis stopped and restarted under load (last: it stops Redis) ---


class _Load:
    """Writers sending messages round-robin into rooms of their own until stopped; every status
    code is recorded (a 5xx fails the test). Paused while wake-ups are measured: every write
    wakes every long-poll of the process it reached, which would hide a missing cross-process
    wake-up."""

    def __init__(self, rr: RoundRobin, tokens: list[tuple[str, str]]) -> None:
        self.rr = rr
        self.tokens = tokens  # (token, room_id)
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self._stop = asyncio.Event()
        self._running = asyncio.Event()
        self._idle: list[asyncio.Event] = []

    async def _writer(self, token: str, room_id: str, idle: asyncio.Event) -> None:
        n = 0
        while not self._stop.is_set():
            if not self._running.is_set():
                idle.set()
                await self._running.wait()
                idle.clear()
                continue
            n += 1
            path = f"{CS}/rooms/{q(room_id)}/send/m.room.message/load-{time.time_ns()}-{n}"
            status, body = await self.rr.call(
                "PUT", path, token, {"msgtype": "m.text", "body": "x"}
            )
            self.statuses[status] += 1
            if status >= 500:
                self.errors.append(f"{status} {body}")
            await asyncio.sleep(0.05)

    async def run(self) -> None:
        self._idle = [asyncio.Event() for _ in self.tokens]
        self._running.set()
        await asyncio.gather(
            *(
                self._writer(t, r, idle)
                for (t, r), idle in zip(self.tokens, self._idle, strict=True)
            )
        )

    async def pause(self) -> None:
        self._running.clear()
        for idle in self._idle:
            await idle.wait()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()


async def _sync(client: Client, token: str, since: str | None, timeout_ms: int) -> dict[str, Any]:
    params = {"timeout": str(timeout_ms)}
    if since is not None:
        params["since"] = since
    status, body = await client.call(
        "GET", f"{CS}/sync", token, params=params, timeout=timeout_ms / 1000 + 30
    )
    assert status == 200, (status, body)
    return dict(body)


def _has_body(response: dict[str, Any], room_id: str, body: str) -> bool:
    room = response.get("rooms", {}).get("join", {}).get(room_id, {})
    return any(
        e.get("content", {}).get("body") == body for e in room.get("timeline", {}).get("events", [])
    )


async def _poll_until(
    client: Client, token: str, since: list[str], index: int, room_id: str, body: str
) -> float:
    """Long-poll process ``index`` (advancing ``since[index]``) until ``body`` arrives; the
    monotonic time it did."""
    while True:
        response = await _sync(client, token, since[index], LONG_POLL_MS)
        since[index] = response["next_batch"]
        if _has_body(response, room_id, body):
            return time.monotonic()


async def _wake_latencies(
    rr: RoundRobin, reader: str, writer: str, room_id: str, since: list[str], tag: str
) -> list[float]:
    """A long-poll parked on each process, then a message sent on each process in turn: the
    seconds each long-poll took to return with a message written on ANOTHER process (failing
    at once beyond WAKE_DEADLINE: no need to sit out a long-poll whose wake-up is lost)."""
    latencies: list[float] = []
    for writer_index in range(3):
        body = f"{tag} via proc{writer_index}"
        polls = [
            asyncio.create_task(_poll_until(rr.on(i), reader, since, i, room_id, body))
            for i in range(3)
            if i != writer_index
        ]
        await asyncio.sleep(0.3)  # let the long-polls park
        sent_at = time.monotonic()
        path = f"{CS}/rooms/{q(room_id)}/send/m.room.message/wake-{time.time_ns()}"
        status, answer = await rr.call_on(
            writer_index, "PUT", path, writer, {"msgtype": "m.text", "body": body}
        )
        assert status == 200, (status, answer)
        done, pending = await asyncio.wait(polls, timeout=WAKE_DEADLINE + 2)
        for task in pending:
            task.cancel()
        latencies += [task.result() - sent_at for task in done]
        latencies += [float("inf")] * len(pending)
    assert max(latencies) <= WAKE_DEADLINE, (tag, latencies)
    return latencies


def _redis_connected(metrics: dict[str, list[tuple[dict[str, str], float]]]) -> bool | None:
    """What the process's metrics say of its Redis connection: the gauges whose name holds
    both "redis" and "connect" all 1 (True) or all 0 (False); None if they disagree or there is
    no such gauge."""
    values = {
        value
        for name, samples in metrics.items()
        if "redis" in name and "connect" in name and not name.endswith(("_created", "_total"))
        for _, value in samples
    }
    return {1.0: True, 0.0: False}.get(values.pop()) if len(values) == 1 else None


async def test_redis_stopped_and_restarted_under_load(cluster: Cluster, rr: RoundRobin) -> None:
    _, writer = await rr.register("wake_writer")
    _, reader = await rr.register("wake_reader")
    room_id = (await rr.ok("POST", f"{CS}/createRoom", writer, {"preset": "public_chat"}))[
        "room_id"
    ]
    await rr.ok("POST", f"{CS}/join/{q(room_id)}", reader, {})
    since = [(await _sync(rr.on(i), reader, None, 0))["next_batch"] for i in range(3)]
    load_rooms = []
    for i in range(3):
        _, token = await rr.register(f"load{i}")
        load_rooms.append((token, (await rr.ok("POST", f"{CS}/createRoom", token, {}))["room_id"]))
    load = _Load(rr, load_rooms)
    load_task = asyncio.create_task(load.run())
    try:
        async with asyncio.timeout(6 * WAIT):
            await asyncio.sleep(0.5)
            await load.pause()
            up = await _wake_latencies(rr, reader, writer, room_id, since, "redis up")
            for index in range(3):
                assert _redis_connected(await cluster.metrics(index)) is True, index
            load.resume()
            await asyncio.sleep(0.5)

            cluster.redis.stop()
            await asyncio.sleep(1.5)  # writes go on with Redis gone
            await load.pause()
            down = await _wake_latencies(rr, reader, writer, room_id, since, "redis down")
            for index in range(3):
                assert _redis_connected(await cluster.metrics(index)) is False, index
            load.resume()

            cluster.redis.start()
            await _until_reconnected(cluster)
            await asyncio.sleep(0.5)
            await load.pause()
            back = await _wake_latencies(rr, reader, writer, room_id, since, "redis back")
            load.resume()
    except BaseException as e:
        if isinstance(e, asyncio.CancelledError | KeyboardInterrupt):
            raise
        raise _fail_with_logs(cluster, e) from e
    finally:
        load.stop()
        await load_task
    assert not load.errors, load.errors[:5]
    assert load.statuses[200] > 0 and set(load.statuses) == {200}, load.statuses
    print(f"wake-up latencies (s): redis up {up}, down {down}, back {back}")
    for instance in cluster.instances:
        said = [
            line
            for line in instance.log().splitlines()
            if re.search("redis", line, re.I) and re.search('"(WARNING|ERROR)"', line)
        ]
        assert said, f"{instance.name} logged nothing about losing Redis"


async def _until_reconnected(cluster: Cluster) -> None:
    """Every process says it has Redis again (it reconnects by itself)."""
    deadline = time.monotonic() + WAIT
    pending = set(range(cluster.size))
    while pending:
        for index in sorted(pending):
            if _redis_connected(await cluster.metrics(index)) is True:
                pending.discard(index)
        assert time.monotonic() < deadline, f"never reconnected to Redis: {sorted(pending)}"
        await asyncio.sleep(0.2)


# --- a process killed (last: it leaves one process dead) ---


async def test_killed_process_loses_nothing_and_synapse_gets_every_event_once(
    cluster: Cluster, synapse: SynapseServer, rr: RoundRobin
) -> None:
    try:
        async with asyncio.timeout(4 * WAIT):
            await killed_under_load(cluster, synapse, rr.session)
    except BaseException as e:
        if isinstance(e, asyncio.CancelledError | KeyboardInterrupt):
            raise
        errors = "\n".join(synapse.errors_in_log()[-20:])
        raise AssertionError(
            f"{type(e).__name__}: {e}\n\n{cluster.log_tail()}\n--- Synapse errors ---\n{errors}"
        ) from e
