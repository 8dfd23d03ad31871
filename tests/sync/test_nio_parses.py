"""matrix-nio (the issue's reference client) accepts our /sync responses: every section it
validates parses into its typed response, not an error."""

from __future__ import annotations

import nio

from homeserver.app import Homeserver
from tests.builders import invite, join, leave, make_room, say
from tests.harness import TestServer
from tests.sync.helpers import sync


async def test_nio_parses_initial_and_incremental_syncs(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    joined = await make_room(hs, alice.user_id, name="Joined")
    invited = await make_room(hs, alice.user_id)
    left = await make_room(hs, alice.user_id)
    await join(hs, joined, bob.user_id)
    await join(hs, left, bob.user_id)
    message = await say(hs, joined, alice.user_id, "hi")
    first = await sync(server, bob)
    await invite(hs, invited, alice.user_id, bob.user_id)
    await leave(hs, left, bob.user_id)
    await say(hs, joined, alice.user_id, "again")
    await server.call("POST", f"/rooms/{joined}/receipt/m.read/{message.event_id}", bob, json={})
    await server.call(
        "PUT", f"/user/{bob.user_id}/rooms/{joined}/tags/m.favourite", bob, json={"order": 1}
    )
    await server.call(
        "PUT", "/pushrules/global/override/.m.rule.master/enabled", bob, json={"enabled": True}
    )
    second = await sync(server, bob, since=first["next_batch"])

    parsed_first = nio.SyncResponse.from_dict(first)
    assert isinstance(parsed_first, nio.SyncResponse), parsed_first
    assert joined in parsed_first.rooms.join
    parsed = nio.SyncResponse.from_dict(second)
    assert isinstance(parsed, nio.SyncResponse), parsed
    assert [e.body for e in parsed.rooms.join[joined].timeline.events] == ["again"]
    assert invited in parsed.rooms.invite
    assert left in parsed.rooms.leave
    ephemeral = parsed.rooms.join[joined].ephemeral
    assert any(isinstance(e, nio.ReceiptEvent) for e in ephemeral)
    account_data = parsed.rooms.join[joined].account_data
    assert any(isinstance(e, nio.TagEvent) for e in account_data)
    assert any(isinstance(e, nio.PushRulesEvent) for e in parsed.account_data_events)
