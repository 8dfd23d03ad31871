"""History visibility on the events we serve to other servers (/event, /backfill,
/get_missing_events): events a server may not see come back redacted — same event ID, so the DAG
stays walkable — and the rest in full; both engines.

A network-free fake remote (tests.federation.received_helpers.Remote, its key seeded in our
store) has a user join our room part-way through its history; requests are X-Matrix-signed and
sent exactly as signed (tests.federation.h4_helpers.signed_request).
"""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.event import Event
from homeserver.events.redaction import prune_event_dict
from homeserver.federation.serving import event_visible_to_server, server_may_see
from homeserver.room_versions import RoomVersion
from tests.builders import create_public_room
from tests.federation.received_helpers import Remote, signed_request
from tests.harness import TestServer, TestUser
from tests.http_client import q

V1 = "/_matrix/federation/v1"


# --- the rule ----------------------------------------------------------------------------------

# (history visibility at the event, memberships of the asking server's users there) → visible.
# The asking server has a user joined now (the access check comes first): "shared" shows it what
# came while it was out, as Synapse's filter_events_for_server does.
RULE_CASES = [
    ("world_readable", [], True),
    ("world_readable", ["ban"], True),
    ("shared", [], True),
    ("shared", ["leave"], True),
    ("shared", ["ban"], True),
    ("no such visibility", [], True),
    ("invited", [], False),
    ("invited", ["leave", "ban"], False),
    ("invited", ["invite"], True),
    ("invited", ["leave", "join"], True),
    ("invited", ["ban", "invite"], True),
    ("invited", ["knock"], False),
    ("joined", ["invite"], False),
    ("joined", ["leave", None], False),
    ("joined", ["invite", "join"], True),
    ("joined", ["ban"], False),
    ("joined", ["ban", "join"], True),
]


@pytest.mark.parametrize(("visibility", "memberships", "visible"), RULE_CASES)
def test_rule(visibility: str, memberships: list[str | None], visible: bool) -> None:
    assert server_may_see(visibility, memberships) is visible
    assert event_visible_to_server(visibility, memberships, sender_erased=False) is visible
    # An erased sender's events are never served in full, whatever the visibility.
    assert event_visible_to_server(visibility, memberships, sender_erased=True) is False


# --- served over federation --------------------------------------------------------------------


class Room:
    """Our room with ``history_visibility``, alice in it, and a fake remote that can join."""

    def __init__(self, server: TestServer, alice: TestUser, room_id: str, remote: Remote) -> None:
        self.server = server
        self.alice = alice
        self.room_id = room_id
        self.remote = remote
        self.room_version: RoomVersion | None = None
        self._txn = 0

    @classmethod
    async def create(cls, server: TestServer, visibility: str) -> Room:
        alice = await server.register("alice")
        room_id = await create_public_room(
            server,
            alice,
            initial_state=[
                {
                    "type": "m.room.history_visibility",
                    "state_key": "",
                    "content": {"history_visibility": visibility},
                }
            ],
        )
        remote = Remote()
        await remote.seed_key(server.hs)
        room = cls(server, alice, room_id, remote)
        room.room_version = await server.hs.received_events.room_version_of(room_id)
        return room

    async def send(self, body: str) -> str:
        self._txn += 1
        status, answer = await self.server.call(
            "PUT",
            f"/rooms/{self.room_id}/send/m.room.message/t{self._txn}",
            self.alice,
            json={"msgtype": "m.text", "body": body},
        )
        assert status == 200, answer
        return answer["event_id"]

    async def invite_remote_user(self) -> str:
        user_id = self.remote.user("r")
        status, answer = await self.server.call(
            "POST", f"/rooms/{self.room_id}/invite", self.alice, json={"user_id": user_id}
        )
        assert status == 200, answer
        event_id = await self.server.hs.store.state.get_current_state_event_id(
            self.room_id, "m.room.member", user_id
        )
        assert event_id is not None
        return event_id

    async def remote_leaves(self) -> str:
        user_id = self.remote.user("r")
        event_id, pdu = await self.remote.build(
            self.server.hs,
            self.room_id,
            type="m.room.member",
            sender=user_id,
            state_key=user_id,
            content={"membership": "leave"},
        )
        await self.remote.receive(self.server.hs, pdu)
        return event_id

    def _by_id(self, pdus: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        assert self.room_version is not None
        # The ID computed from what was served: a redacted copy keeps the original's ID.
        return {Event(p, self.room_version).event_id: p for p in pdus}

    async def backfill(self, from_id: str) -> dict[str, dict[str, Any]]:
        status, body = await signed_request(
            self.server,
            self.remote,
            "GET",
            f"{V1}/backfill/{q(self.room_id)}?v={q(from_id)}&limit=50",
        )
        assert status == 200, body
        return self._by_id(body["pdus"])

    async def event(self, event_id: str) -> dict[str, Any]:
        status, body = await signed_request(
            self.server, self.remote, "GET", f"{V1}/event/{q(event_id)}"
        )
        assert status == 200, body
        served = self._by_id(body["pdus"])
        assert list(served) == [event_id]
        return served[event_id]

    async def refused(self, event_id: str) -> bool:
        """Whether /event for ``event_id`` is refused with 403 M_FORBIDDEN."""
        status, body = await signed_request(
            self.server, self.remote, "GET", f"{V1}/event/{q(event_id)}"
        )
        return status == 403 and body["errcode"] == "M_FORBIDDEN"

    async def missing_events(self, latest: str) -> dict[str, dict[str, Any]]:
        status, body = await signed_request(
            self.server,
            self.remote,
            "POST",
            f"{V1}/get_missing_events/{q(self.room_id)}",
            {"earliest_events": [], "latest_events": [latest], "limit": 50},
        )
        assert status == 200, body
        return self._by_id(body["events"])

    async def form(self, event_id: str, pdu: dict[str, Any]) -> str:
        """ "full" or "redacted": how ``pdu`` (served as ``event_id``) compares to our copy."""
        stored = await self.server.hs.store.events.get_event(event_id)
        assert stored is not None
        if pdu == stored.federation_json():
            return "full"
        assert pdu == prune_event_dict(stored.room_version, stored.federation_json())
        return "redacted"

    async def forms(self, served: dict[str, dict[str, Any]], ids: list[str]) -> list[str]:
        return [await self.form(i, served[i]) for i in ids]


async def test_joined_hides_what_came_before_the_join_and_after_the_leave(
    server: TestServer,
) -> None:
    room = await Room.create(server, "joined")
    before = [await room.send("before 1"), await room.send("before 2")]
    join_id = await room.remote.join(server.hs, room.room_id)
    after = [await room.send("after 1"), await room.send("after 2")]
    # /backfill: earlier messages redacted (not dropped), the server's own join (judged by the
    # state after it, as Synapse does) and later messages in full.
    served = await room.backfill(after[-1])
    assert await room.forms(served, [*before, join_id, *after]) == [
        "redacted",
        "redacted",
        "full",
        "full",
        "full",
    ]
    assert served[before[0]]["content"] == {}
    create_id = await server.hs.store.state.get_current_state_event_id(
        room.room_id, "m.room.create"
    )
    assert create_id in served  # the walk reached the room's start through redacted events
    # /event, one at a time.
    assert await room.form(before[1], await room.event(before[1])) == "redacted"
    assert await room.form(after[0], await room.event(after[0])) == "full"
    # /get_missing_events.
    served = await room.missing_events(after[-1])
    assert await room.forms(served, [*before, join_id, after[0]]) == [
        "redacted",
        "redacted",
        "full",
        "full",
    ]
    # Once its only user has left, the server is not answered at all; when another of its users
    # joins, it sees what was sent while it was there, but not what came in between.
    await room.remote_leaves()
    later = await room.send("after the leave")
    assert await room.refused(later)
    await room.remote.join(server.hs, room.room_id, "r2")
    assert await room.form(later, await room.event(later)) == "redacted"
    assert await room.form(after[1], await room.event(after[1])) == "full"


async def test_shared_shows_everything(server: TestServer) -> None:
    room = await Room.create(server, "shared")
    before = await room.send("before")
    join_id = await room.remote.join(server.hs, room.room_id)
    after = await room.send("after")
    served = await room.backfill(after)
    assert len(served) > 3
    assert set(await room.forms(served, list(served))) == {"full"}
    assert await room.forms(served, [before, join_id, after]) == ["full"] * 3
    assert await room.form(before, await room.event(before)) == "full"
    served = await room.missing_events(after)
    assert set(await room.forms(served, list(served))) == {"full"}
    # A server that had a user in the room is refused once it has none joined; back in, it sees
    # shared history, what came while it was out too.
    await room.remote_leaves()
    later = await room.send("after the leave")
    assert await room.refused(later)
    await room.remote.join(server.hs, room.room_id, "r2")
    assert await room.form(later, await room.event(later)) == "full"
    # An event redacted here is served in its redacted form, visible or not.
    status, answer = await server.call(
        "PUT", f"/rooms/{room.room_id}/redact/{before}/r1", room.alice, json={}
    )
    assert status == 200, answer
    assert await room.form(before, await room.event(before)) == "redacted"
    assert await room.form(before, (await room.backfill(later))[before]) == "redacted"


async def test_invited_shows_history_from_the_invite(server: TestServer) -> None:
    room = await Room.create(server, "invited")
    before = await room.send("before the invite")
    invite_id = await room.invite_remote_user()
    invited = await room.send("after the invite")
    # Only invited so far: not answered (the invite carries what the invitee needs).
    assert await room.refused(before)
    assert await room.refused(invited)
    join_id = await room.remote.join(server.hs, room.room_id)
    joined = await room.send("after the join")
    served = await room.backfill(joined)
    assert await room.forms(served, [before, invite_id, invited, join_id, joined]) == [
        "redacted",
        "full",
        "full",
        "full",
        "full",
    ]


async def test_visibility_is_worked_out_once_per_state_group(
    server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = await Room.create(server, "joined")
    await room.remote.join(server.hs, room.room_id)
    messages = [await room.send(f"m{n}") for n in range(5)]
    state = server.hs.store.state
    groups = await state.get_state_group_for_events(messages)
    assert len(set(groups.values())) == 1  # messages do not change the state
    loaded: list[int] = []
    load = state.get_state_group_ids

    async def counting(state_group: int, **kwargs: Any) -> Any:
        loaded.append(state_group)
        return await load(state_group, **kwargs)

    monkeypatch.setattr(state, "get_state_group_ids", counting)
    status, body = await signed_request(
        server,
        room.remote,
        "GET",
        f"{V1}/backfill/{q(room.room_id)}?v={q(messages[-1])}&limit=5",
    )
    assert status == 200, body
    served = room._by_id(body["pdus"])
    assert list(served) == messages[::-1]
    assert set(await room.forms(served, messages)) == {"full"}
    assert loaded == list(set(groups.values()))


async def test_an_erased_users_events_are_served_redacted(server: TestServer) -> None:
    room = await Room.create(server, "shared")
    await room.remote.join(server.hs, room.room_id)
    message = await room.send("forget me")
    assert await room.form(message, await room.event(message)) == "full"
    await server.hs.store.admin_users.set_erased(room.alice.user_id, True)
    assert await room.form(message, await room.event(message)) == "redacted"
    assert await room.form(message, (await room.backfill(message))[message]) == "redacted"
