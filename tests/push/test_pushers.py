"""Pushers on both engines: ``/pushers`` and ``/pushers/set`` (checks, append, deletion, the IP
policy), and delivery to a push gateway run by the test (Push Gateway API bodies, backoff,
rejected pushkeys)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web

from homeserver.app import Homeserver
from homeserver.config import HomeserverConfig
from homeserver.push.gateway import GatewayError, PushSender
from homeserver.storage import Store
from tests.builders import join, make_room, say
from tests.harness import TestServer, TestUser, make_config

NOTIFY = "/_matrix/push/v1/notify"


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    # The gateway runs on loopback, which the default ip_range_blacklist forbids.
    return make_config(tmp_path, ip_range_whitelist=["127.0.0.1/32"])


def _pusher(url: str, pushkey: str = "key-1", **extra: Any) -> dict[str, Any]:
    return {
        "kind": "http",
        "app_id": "org.example.app",
        "app_display_name": "Example",
        "device_display_name": "Phone",
        "pushkey": pushkey,
        "lang": "en",
        "data": {"url": url},
        **extra,
    }


async def _pushers(server: TestServer, user: TestUser) -> list[dict[str, Any]]:
    status, body = await server.call("GET", "/pushers", user)
    assert status == 200, body
    pushers: list[dict[str, Any]] = body["pushers"]
    return pushers


REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"kind": "http"}, "M_MISSING_PARAM"),
    (_pusher("https://p.example" + NOTIFY, kind="email"), "M_INVALID_PARAM"),
    (_pusher("https://p.example" + NOTIFY, data={}), "M_MISSING_PARAM"),
    (_pusher("https://p.example/other"), "M_INVALID_PARAM"),
    (_pusher("ftp://p.example" + NOTIFY), "M_INVALID_PARAM"),
    (_pusher("http://[::1" + NOTIFY), "M_INVALID_PARAM"),
    (_pusher("http://10.1.2.3" + NOTIFY), "M_INVALID_PARAM"),
    (_pusher("http://192.168.0.1:99" + NOTIFY), "M_INVALID_PARAM"),
    (_pusher("https://p.example" + NOTIFY, app_id="a" * 65), "M_INVALID_PARAM"),
    (_pusher("https://p.example" + NOTIFY, pushkey="k" * 513), "M_INVALID_PARAM"),
    (_pusher("https://p.example" + NOTIFY, append="yes"), "M_INVALID_PARAM"),
    (_pusher("https://p.example" + NOTIFY, data=[1]), "M_INVALID_PARAM"),
    (_pusher("https://p.example" + NOTIFY, lang=5), "M_INVALID_PARAM"),
    (_pusher("https://p.example" + NOTIFY, pushkey="a\x00b"), "M_INVALID_PARAM"),
    (_pusher("https://p.example" + NOTIFY, profile_tag="a\x00b"), "M_INVALID_PARAM"),
    (
        _pusher("https://p.example" + NOTIFY, data={"url": "https://p.example/x\x00"}),
        "M_INVALID_PARAM",
    ),
    ({"kind": None, "app_id": 1, "pushkey": "k"}, "M_INVALID_PARAM"),
]


async def test_set_get_replace_delete_refuse(server: TestServer):
    alice = await server.register("alice")
    bob = await server.register("bob")
    for body, errcode in REFUSED:
        status, answer = await server.call("POST", "/pushers/set", alice, json=body)
        assert status == 400 and answer["errcode"] == errcode, (body, answer)
    assert await _pushers(server, alice) == []  # nothing stored by a refused request
    url = "https://push.example.org" + NOTIFY
    status, body = await server.call(
        "POST", "/pushers/set", alice, json=_pusher(url, profile_tag="tag1")
    )
    assert status == 200, body
    [got] = await _pushers(server, alice)
    assert got == {**_pusher(url), "profile_tag": "tag1"}
    assert await _pushers(server, bob) == []
    # The same app and pushkey for Bob without append takes it from Alice; with append both.
    await server.call("POST", "/pushers/set", bob, json=_pusher(url))
    assert await _pushers(server, alice) == []
    await server.call("POST", "/pushers/set", alice, json=_pusher(url, append=True))
    assert len(await _pushers(server, alice)) == len(await _pushers(server, bob)) == 1
    # Setting again replaces; kind null deletes.
    await server.call("POST", "/pushers/set", alice, json=_pusher(url, lang="fr", append=True))
    assert [p["lang"] for p in await _pushers(server, alice)] == ["fr"]
    status, _ = await server.call(
        "POST",
        "/pushers/set",
        alice,
        json={"kind": None, "app_id": "org.example.app", "pushkey": "key-1"},
    )
    assert status == 200
    assert await _pushers(server, alice) == []
    assert len(await _pushers(server, bob)) == 1
    # Deactivating the account deletes its pushers.
    await server.hs.store.users.deactivate_user(bob.user_id)
    assert await server.hs.store.pushers.get_pushers(bob.user_id) == []


async def test_gateway_receives_notifications(
    server: TestServer, hs: Homeserver, aiohttp_server: Any
):
    received: list[dict[str, Any]] = []
    answers = [500]  # the first attempt fails: backoff, then the same job again

    async def notify(request: web.Request) -> web.Response:
        received.append(await request.json())
        status = answers.pop(0) if answers else 200
        return web.json_response({"rejected": []}, status=status)

    app = web.Application()
    app.router.add_post(NOTIFY, notify)
    gateway = await aiohttp_server(app, host="127.0.0.1")
    url = f"http://127.0.0.1:{gateway.port}{NOTIFY}"

    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, bob.user_id)
    status, body = await server.call("POST", "/pushers/set", bob, json=_pusher(url))
    assert status == 200, body
    status, body = await server.call(
        "POST",
        "/pushers/set",
        bob,
        json=_pusher(url, pushkey="key-2", data={"url": url, "format": "event_id_only"}),
    )
    assert status == 200, body
    message = await say(hs, room_id, alice.user_id, "hello bob")
    await hs.push_evaluator.process_pending()
    [first, second] = sorted(await hs.store.pushers.get_pushers(bob.user_id), key=lambda p: p.id)

    # Delivery, one attempt at a time (the sender's loop does exactly this).
    assert await hs.push_sender.send_next(first)  # 500: backoff
    [again] = [p for p in await hs.store.pushers.get_pushers(bob.user_id) if p.id == first.id]
    assert again.retry_interval_ms == 1000 and again.failing_since is not None
    assert await hs.push_sender.send_next(again)
    assert not await hs.push_sender.send_next(again)  # delivered: nothing left
    assert await hs.push_sender.send_next(second)

    full, retried, minimal = received
    assert full == retried
    notification = full["notification"]
    assert notification["event_id"] == message.event_id
    assert notification["room_id"] == room_id
    assert notification["type"] == "m.room.message"
    assert notification["sender"] == alice.user_id
    assert notification["content"]["body"] == "hello bob"
    assert notification["prio"] == "high"
    assert notification["counts"] == {"unread": 1}
    [device] = notification["devices"]
    assert device["app_id"] == "org.example.app" and device["pushkey"] == "key-1"
    assert device["tweaks"] == {"sound": "default", "highlight": True}
    assert "url" not in device["data"]
    assert set(minimal["notification"]) == {"event_id", "room_id", "counts", "prio", "devices"}
    [backoff_cleared] = [
        p for p in await hs.store.pushers.get_pushers(bob.user_id) if p.id == first.id
    ]
    assert backoff_cleared.retry_interval_ms == 0

    # A gateway that rejects the pushkey loses the pusher (and its queue).
    async def reject(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"rejected": [body["notification"]["devices"][0]["pushkey"]]})

    app2 = web.Application()
    app2.router.add_post(NOTIFY, reject)
    gateway2 = await aiohttp_server(app2, host="127.0.0.1")
    url2 = f"http://127.0.0.1:{gateway2.port}{NOTIFY}"
    await server.call("POST", "/pushers/set", bob, json=_pusher(url2, pushkey="key-3"))
    await say(hs, room_id, alice.user_id, "again")
    await hs.push_evaluator.process_pending()
    [third] = [p for p in await hs.store.pushers.get_pushers(bob.user_id) if p.pushkey == "key-3"]
    assert not await hs.push_sender.send_next(third)
    assert "key-3" not in {p["pushkey"] for p in await _pushers(server, bob)}


async def test_private_gateway_refused_without_whitelist(tmp_path: Path, aiohttp_server: Any):
    """With the default ip_range_blacklist a gateway on loopback is never connected to, even
    when a pusher's URL reached the queue (e.g. through a name resolving there)."""
    hits: list[int] = []

    async def notify(request: web.Request) -> web.Response:
        hits.append(1)
        return web.json_response({})

    app = web.Application()
    app.router.add_post(NOTIFY, notify)
    gateway = await aiohttp_server(app, host="127.0.0.1")
    sender = PushSender(cast(Store, None), make_config(tmp_path).federation, lambda: 0)
    try:
        with pytest.raises(GatewayError):
            await sender.post_json(f"http://127.0.0.1:{gateway.port}{NOTIFY}", {})
    finally:
        await sender.stop()
    assert hits == []
