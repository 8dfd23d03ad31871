"""A peer that is down — here one that accepts connections and then never answers, the worst
kind — never holds up a local request: local sends commit and answer while delivery to that
peer hangs, and what it should receive stays queued in the outbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from homeserver.config import HomeserverConfig
from homeserver.events.event import Event
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, get_room_version
from tests.builders import create_public_room
from tests.federation.fake_remote import federation_test_config
from tests.federation.received_helpers import Remote, signed_request
from tests.harness import TestServer as Server
from tests.http_client import q

DEADLINE = 60  # seconds: only so that a request that waits on the peer fails instead of hanging


class BlackHole:
    """A TCP server that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    relaxed = {"per_second": 1000, "burst_count": 1000}
    return federation_test_config(
        tmp_path, rc_message=relaxed, rc_room_creation=relaxed, rc_joins={"local": relaxed}
    )


@pytest.fixture
async def black_hole() -> AsyncIterator[BlackHole]:
    hole = BlackHole()
    yield hole
    await hole.close()


async def _join(server: Server, remote: Remote, room_id: str, user_id: str) -> None:
    """``user_id`` of ``remote`` joins through make_join / send_join, as a real server would."""
    versions = "&".join(f"ver={v}" for v in KNOWN_ROOM_VERSIONS)
    path = f"/_matrix/federation/v1/make_join/{q(room_id)}/{q(user_id)}?{versions}"
    status, answer = await signed_request(server, remote, "GET", path)
    assert status == 200, answer
    version = get_room_version(answer["room_version"])
    pdu = remote.sign(version, dict(answer["event"]))
    event_id = Event(pdu, version).event_id
    path = f"/_matrix/federation/v2/send_join/{q(room_id)}/{q(event_id)}?omit_members=true"
    status, body = await signed_request(server, remote, "PUT", path, pdu)
    assert status == 200, body


async def _until(condition: object, what: str) -> None:
    async def wait() -> None:
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(wait(), DEADLINE)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


async def test_local_sends_answer_while_a_member_server_hangs(
    server: Server, black_hole: BlackHole
) -> None:
    port = await black_hole.start()
    remote = Remote(f"localhost:{port}")
    await remote.seed_key(server.hs)
    alice = await server.register("alice")
    room_id = await create_public_room(server, alice)
    await _join(server, remote, room_id, remote.user("bob"))
    sender = server.hs.federation_sender
    await sender.start()
    try:
        status, _ = await server.call(
            "PUT", f"/rooms/{room_id}/send/m.room.message/first", alice, json={"body": "1"}
        )
        assert status == 200
        # Delivery to the peer has begun and is stuck on a connection that never answers …
        await _until(lambda: black_hole.connections >= 1, "the sender connecting to the peer")

        # … and local requests go on regardless.
        async def more_sends() -> list[int]:
            statuses = []
            for n in range(10):
                status, _ = await server.call(
                    "PUT",
                    f"/rooms/{room_id}/send/m.room.message/m{n}",
                    alice,
                    json={"msgtype": "m.text", "body": f"message {n}"},
                )
                statuses.append(status)
            status, _ = await server.call("GET", f"/rooms/{room_id}/messages", alice)
            statuses.append(status)
            return statuses

        statuses = await asyncio.wait_for(more_sends(), DEADLINE)
        assert statuses == [200] * 11
        # They answered while that first delivery attempt was still hanging: a failed attempt
        # would have put the peer into backoff.
        assert black_hole.connections >= 1
        assert sender.waiting_until(remote.name) is None
        # Nothing was delivered, nothing is lost: the events wait in the outbox for the peer.
        pending = await server.hs.store.outbox.pending_by_destination()
        assert pending.get(remote.name, 0) >= 10, pending
    finally:
        await sender.stop()
