"""Redactions received over federation are applied by the spec's rule for room versions 3 and
later, on both engines: a redaction from the target's own server always; from another server
only when its sender held the ``redact`` level in the state the redaction cites; and one that
arrives before its target is applied when the target is stored."""

from __future__ import annotations

from homeserver.app import Homeserver
from tests.builders import create_public_room
from tests.federation.received_helpers import Remote
from tests.harness import TestServer, TestUser


async def _setup(server: TestServer) -> tuple[TestUser, str, Remote]:
    alice = await server.register("alice")
    room_id = await create_public_room(server, alice)
    remote = Remote()
    await remote.seed_key(server.hs)
    await remote.join(server.hs, room_id)
    return alice, room_id, remote


async def _alice_says(server: TestServer, alice: TestUser, room_id: str) -> str:
    status, body = await server.call(
        "PUT",
        f"/rooms/{room_id}/send/m.room.message/t1",
        alice,
        json={"msgtype": "m.text", "body": "x"},
    )
    assert status == 200, body
    return str(body["event_id"])


async def _redact(hs: Homeserver, remote: Remote, room_id: str, target: str, **kw: object) -> str:
    event_id, pdu = await remote.build(
        hs,
        room_id,
        type="m.room.redaction",
        sender=remote.user("r"),
        content={"redacts": target},
        **kw,  # type: ignore[arg-type]
    )
    pdu["redacts"] = target  # the pre-v11 top-level key; v11 reads the content
    remote.sign(await hs.received_events.room_version_of(room_id), pdu)
    event_id = (await remote.receive(hs, pdu)).event_id
    return event_id


async def _is_redacted(hs: Homeserver, event_id: str) -> bool:
    event = await hs.store.events.get_event(event_id)
    assert event is not None
    return event.internal.redacted


async def test_redaction_of_another_servers_event_needs_the_redact_level(
    server: TestServer,
) -> None:
    hs = server.hs
    alice, room_id, remote = await _setup(server)
    target = await _alice_says(server, alice, room_id)
    await _redact(hs, remote, room_id, target)
    assert not await _is_redacted(hs, target)

    status, levels = await server.call("GET", f"/rooms/{room_id}/state/m.room.power_levels", alice)
    assert status == 200
    levels["users"][remote.user("r")] = levels.get("redact", 50)
    status, body = await server.call(
        "PUT", f"/rooms/{room_id}/state/m.room.power_levels", alice, json=levels
    )
    assert status == 200, body
    await _redact(hs, remote, room_id, target)
    assert await _is_redacted(hs, target)


async def _found(server: TestServer, user: TestUser, term: str) -> int:
    body = {"search_categories": {"room_events": {"search_term": term}}}
    status, answer = await server.call("POST", "/search", user, json=body)
    assert status == 200, answer
    return len(answer["search_categories"]["room_events"]["results"])


async def test_redaction_of_its_own_servers_event_applies(server: TestServer) -> None:
    hs = server.hs
    alice, room_id, remote = await _setup(server)
    message_id, pdu = await remote.build(
        hs,
        room_id,
        type="m.room.message",
        sender=remote.user("r"),
        content={"msgtype": "m.text", "body": "oops"},
    )
    await remote.receive(hs, pdu)
    assert await _found(server, alice, "oops") == 1
    await _redact(hs, remote, room_id, message_id)
    assert await _is_redacted(hs, message_id)
    # Its text is gone from the search index with it.
    assert await _found(server, alice, "oops") == 0


async def test_redaction_arriving_before_its_target_applies_when_the_target_arrives(
    server: TestServer,
) -> None:
    hs = server.hs
    _alice, room_id, remote = await _setup(server)
    extremities = (await hs.store.events.get_forward_extremities(room_id)).event_ids
    message_id, message = await remote.build(
        hs,
        room_id,
        type="m.room.message",
        sender=remote.user("r"),
        content={"msgtype": "m.text", "body": "soon gone"},
        prev_events=extremities,
    )
    await _redact(hs, remote, room_id, message_id, prev_events=extremities)
    await remote.receive(hs, message)
    assert await _is_redacted(hs, message_id)
