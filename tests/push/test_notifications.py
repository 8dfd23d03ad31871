"""Notifications on both engines: push rules evaluated behind the events stream, unread counts
in /sync (threads too) reset by read receipts, ``GET /notifications``."""

from __future__ import annotations

import asyncio
from typing import Any

from homeserver.app import Homeserver
from homeserver.events.draft import EventDraft
from tests.builders import invite, join, make_room, say
from tests.harness import TestServer, TestUser
from tests.sync.helpers import sync


def _counts(body: dict[str, Any], room_id: str) -> dict[str, int]:
    counts: dict[str, int] = body["rooms"]["join"][room_id]["unread_notifications"]
    return counts


async def _receipt(
    server: TestServer, user: TestUser, room_id: str, kind: str, event_id: str, **body: Any
) -> None:
    status, answer = await server.call(
        "POST", f"/rooms/{room_id}/receipt/{kind}/{event_id}", user, json=body
    )
    assert status == 200, answer


async def _room_with_bob(server: TestServer, hs: Homeserver) -> tuple[TestUser, TestUser, str]:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, bob.user_id)
    return alice, bob, room_id


async def test_counts_follow_messages_and_receipts(server: TestServer, hs: Homeserver):
    alice, bob, room_id = await _room_with_bob(server, hs)
    first = await say(hs, room_id, alice.user_id, "hello there")
    second = await say(hs, room_id, alice.user_id, "are you there, bob?")
    before = await sync(server, bob)
    # Not evaluated yet: nothing counted, and the next sync sends the room again once it is.
    assert _counts(before, room_id) == {"notification_count": 0, "highlight_count": 0}
    # Two evaluators racing over one position (as two processes would): each event once.
    done = await asyncio.gather(
        hs.push_evaluator.process_pending(), hs.push_evaluator.process_pending()
    )
    assert sum(done) >= 2
    assert await hs.push_evaluator.process_pending() == 0
    after = await sync(server, bob, since=before["next_batch"], timeout="0")
    assert _counts(after, room_id) == {"notification_count": 2, "highlight_count": 1}
    # The sender is never notified of their own messages.
    assert _counts(await sync(server, alice), room_id)["notification_count"] == 0

    await _receipt(server, bob, room_id, "m.read", first.event_id)
    body = await sync(server, bob, since=after["next_batch"], timeout="0")
    assert _counts(body, room_id) == {"notification_count": 1, "highlight_count": 1}
    await _receipt(server, bob, room_id, "m.read.private", second.event_id)
    body = await sync(server, bob, since=body["next_batch"], timeout="0")
    assert _counts(body, room_id) == {"notification_count": 0, "highlight_count": 0}

    # The invitee is notified of the invite (default rule); once joined, without a receipt yet,
    # counting starts at the join: the invite is not an unread of the room (Synapse's floor).
    carol = await server.register("carol")
    invitation = await invite(hs, room_id, alice.user_id, carol.user_id)
    await hs.push_evaluator.process_pending()
    status, listed = await server.call("GET", "/notifications", carol)
    assert status == 200, listed
    assert [n["event"]["event_id"] for n in listed["notifications"]] == [invitation.event_id]
    await join(hs, room_id, carol.user_id)
    await say(hs, room_id, alice.user_id, "welcome aboard")
    await hs.push_evaluator.process_pending()
    assert _counts(await sync(server, carol), room_id) == {
        "notification_count": 1,
        "highlight_count": 0,
    }


async def test_rules_decide(server: TestServer, hs: Homeserver):
    alice, bob, room_id = await _room_with_bob(server, hs)
    # Bob mutes the room; notices and reactions never notify (default rules).
    status, answer = await server.call(
        "PUT", f"/pushrules/global/room/{room_id}", bob, json={"actions": ["dont_notify"]}
    )
    assert status == 200, answer
    await say(hs, room_id, alice.user_id, "muted for him")
    carol = await server.register("carol")
    await join(hs, room_id, carol.user_id)
    await hs.sender.send(
        room_id,
        EventDraft("m.room.message", alice.user_id, {"msgtype": "m.notice", "body": "bot"}),
    )
    mention = await hs.sender.send(
        room_id,
        EventDraft(
            "m.room.message",
            alice.user_id,
            {"msgtype": "m.text", "body": "hi", "m.mentions": {"user_ids": [carol.user_id]}},
        ),
    )
    await hs.push_evaluator.process_pending()
    assert _counts(await sync(server, bob), room_id)["notification_count"] == 0
    carol_counts = _counts(await sync(server, carol), room_id)
    assert carol_counts == {"notification_count": 1, "highlight_count": 1}
    status, listed = await server.call("GET", "/notifications", carol)
    assert status == 200, listed
    [only] = listed["notifications"]
    assert only["event"]["event_id"] == mention.event_id
    assert {"set_tweak": "highlight"} in only["actions"]


async def test_thread_counts(server: TestServer, hs: Homeserver):
    alice, bob, room_id = await _room_with_bob(server, hs)
    root = await say(hs, room_id, alice.user_id, "root")
    replies = []
    for text in ("in thread 1", "in thread 2"):
        replies.append(
            await hs.sender.send(
                room_id,
                EventDraft(
                    "m.room.message",
                    alice.user_id,
                    {
                        "msgtype": "m.text",
                        "body": text,
                        "m.relates_to": {"rel_type": "m.thread", "event_id": root.event_id},
                    },
                ),
            )
        )
    await hs.push_evaluator.process_pending()
    unthreaded = await sync(server, bob)
    assert _counts(unthreaded, room_id)["notification_count"] == 3
    assert "unread_thread_notifications" not in unthreaded["rooms"]["join"][room_id]
    threaded_filter = '{"room":{"timeline":{"unread_thread_notifications":true}}}'
    threaded = await sync(server, bob, filter=threaded_filter)
    room = threaded["rooms"]["join"][room_id]
    assert room["unread_notifications"]["notification_count"] == 1
    assert room["unread_thread_notifications"] == {
        root.event_id: {"notification_count": 2, "highlight_count": 0}
    }
    # A threaded receipt reads that thread only.
    await _receipt(server, bob, room_id, "m.read", replies[0].event_id, thread_id=root.event_id)
    room = (await sync(server, bob, filter=threaded_filter))["rooms"]["join"][room_id]
    assert room["unread_notifications"]["notification_count"] == 1
    assert room["unread_thread_notifications"][root.event_id]["notification_count"] == 1
    await _receipt(server, bob, room_id, "m.read", root.event_id, thread_id="main")
    room = (await sync(server, bob, filter=threaded_filter))["rooms"]["join"][room_id]
    assert room["unread_notifications"]["notification_count"] == 0


async def test_get_notifications_pages(server: TestServer, hs: Homeserver):
    alice, bob, room_id = await _room_with_bob(server, hs)
    sent = [await say(hs, room_id, alice.user_id, f"message {i}") for i in range(3)]
    ping = await say(hs, room_id, alice.user_id, "bob: look")
    await hs.push_evaluator.process_pending()
    await _receipt(server, bob, room_id, "m.read", sent[0].event_id)

    status, page = await server.call("GET", "/notifications", bob, params={"limit": "2"})
    assert status == 200, page
    assert [n["event"]["event_id"] for n in page["notifications"]] == [
        ping.event_id,
        sent[2].event_id,
    ]
    assert all(n["room_id"] == room_id and not n["read"] for n in page["notifications"])
    status, rest = await server.call(
        "GET", "/notifications", bob, params={"from": page["next_token"]}
    )
    assert status == 200, rest
    assert [n["event"]["event_id"] for n in rest["notifications"]] == [
        sent[1].event_id,
        sent[0].event_id,
    ]
    assert [n["read"] for n in rest["notifications"]] == [False, True]
    assert "next_token" not in rest
    status, high = await server.call("GET", "/notifications", bob, params={"only": "highlight"})
    assert [n["event"]["event_id"] for n in high["notifications"]] == [ping.event_id]
    # Another user's notifications are not Alice's.
    status, none = await server.call("GET", "/notifications", alice)
    assert status == 200 and none["notifications"] == []
    for params in ({"from": "x"}, {"limit": "-1"}, {"from": "9" * 40}):
        status, answer = await server.call("GET", "/notifications", bob, params=params)
        assert status == 400 and answer["errcode"] == "M_INVALID_PARAM", (params, answer)
