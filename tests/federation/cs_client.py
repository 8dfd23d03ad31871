"""A per-user client-server API client that talks to our server and to Synapse alike (its raw
requests go through the bare client of tests/http_client.py).

:func:`register_with_shared_secret` makes a user through ``/_synapse/admin/v1/register`` (nonce +
HMAC-SHA1; both servers implement it). A :class:`MatrixClient` keeps a running picture of what
its incremental ``/sync`` has shown — timeline events per joined room, pending invites, joined
rooms — so :meth:`MatrixClient.wait_for` can poll until a predicate over that picture holds,
with a generous deadline rather than a timed assertion.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import aiohttp

from tests.http_client import Client, q

#: One inline filter for every sync: timelines long enough that a test's burst of messages
#: arrives in one piece (presence off: neither side uses it).
SYNC_FILTER = json.dumps(
    {"room": {"timeline": {"limit": 200}}, "presence": {"types": []}}, separators=(",", ":")
)
T = TypeVar("T")
_txn_counter = itertools.count()


class MatrixRequestError(AssertionError):
    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        super().__init__(f"{method} {path} -> {status} {body}")
        self.status = status
        self.body = body


async def register_with_shared_secret(
    session: aiohttp.ClientSession,
    base_url: str,
    secret: str,
    localpart: str,
    *,
    admin: bool = False,
) -> tuple[str, str]:
    """Register ``localpart`` through the shared-secret admin API; ``(user_id, access_token)``."""
    url = base_url + "/_synapse/admin/v1/register"
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        nonce = (await response.json())["nonce"]
    password = f"{localpart}-password-0123456789"
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    for part in (nonce, localpart, password, "admin" if admin else "notadmin"):
        if part != nonce:
            mac.update(b"\x00")
        mac.update(part.encode())
    body = {
        "nonce": nonce,
        "username": localpart,
        "password": password,
        "admin": admin,
        "mac": mac.hexdigest(),
    }
    async with session.post(url, json=body) as response:
        data = await response.json(content_type=None)
        assert response.status == 200, (response.status, data)
    return data["user_id"], data["access_token"]


class MatrixClient:
    """One logged-in user on one server."""

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, user_id: str, access_token: str
    ) -> None:
        self.session = session
        self.base_url = base_url
        self.http = Client(session, base_url)
        self.user_id = user_id
        self.access_token = access_token
        self.since: str | None = None
        #: Timeline events seen per room, in arrival order.
        self.timeline: dict[str, list[dict[str, Any]]] = {}
        #: Pending invites: room ID -> the invite's stripped state.
        self.invites: dict[str, list[dict[str, Any]]] = {}
        self.joined: set[str] = set()

    @classmethod
    async def register(
        cls, session: aiohttp.ClientSession, base_url: str, secret: str, localpart: str
    ) -> MatrixClient:
        user_id, token = await register_with_shared_secret(session, base_url, secret, localpart)
        return cls(session, base_url, user_id, token)

    # --- raw requests -------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Sequence[tuple[str, str]] | None = None,
        timeout: float = 120,
    ) -> tuple[int, Any]:
        return await self.http.call(
            method, path, self.access_token, body, params=list(params or ()), timeout=timeout
        )

    async def ok(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Sequence[tuple[str, str]] | None = None,
    ) -> Any:
        status, data = await self.call(method, path, body, params)
        if status != 200:
            raise MatrixRequestError(method, path, status, data)
        return data

    # --- room operations ----------------------------------------------------------------

    async def create_room(self, **body: Any) -> str:
        return str((await self.ok("POST", "/createRoom", body))["room_id"])

    async def invite(self, room_id: str, user_id: str) -> None:
        await self.ok("POST", f"/rooms/{q(room_id)}/invite", {"user_id": user_id})

    async def join(self, room_id_or_alias: str, via: Sequence[str] = ()) -> str:
        """``/join/{roomIdOrAlias}`` naming ``via`` both as ``server_name`` (the spec's name
        until v1.12) and ``via`` (its name since)."""
        params = [("server_name", s) for s in via] + [("via", s) for s in via]
        data = await self.ok("POST", f"/join/{q(room_id_or_alias)}", {}, params)
        return str(data["room_id"])

    async def leave(self, room_id: str) -> None:
        await self.ok("POST", f"/rooms/{q(room_id)}/leave", {})

    async def send_message(self, room_id: str, body: str) -> str:
        txn = f"interop-{time.time_ns()}-{next(_txn_counter)}"
        content = {"msgtype": "m.text", "body": body}
        path = f"/rooms/{q(room_id)}/send/m.room.message/{txn}"
        return str((await self.ok("PUT", path, content))["event_id"])

    async def send_state(
        self, room_id: str, event_type: str, content: dict[str, Any], state_key: str = ""
    ) -> str:
        path = f"/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}"
        return str((await self.ok("PUT", path, content))["event_id"])

    async def get_state(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> dict[str, Any] | None:
        """The content of a state event, or None when the server says 404."""
        path = f"/rooms/{q(room_id)}/state/{q(event_type)}/{q(state_key)}"
        status, data = await self.call("GET", path)
        if status == 404:
            return None
        if status != 200:
            raise MatrixRequestError("GET", path, status, data)
        return dict(data)

    async def upgrade(self, room_id: str, new_version: str) -> str:
        path = f"/rooms/{q(room_id)}/upgrade"
        return str((await self.ok("POST", path, {"new_version": new_version}))["replacement_room"])

    async def messages(self, room_id: str, limit: int = 500) -> list[dict[str, Any]]:
        """The room's timeline, newest first, as far back as ``limit`` (one page)."""
        params = [("dir", "b"), ("limit", str(limit))]
        data = await self.ok("GET", f"/rooms/{q(room_id)}/messages", None, params)
        return list(data.get("chunk", []))

    # --- sync ---------------------------------------------------------------------------

    async def sync_once(self, timeout_ms: int = 2000) -> dict[str, Any]:
        params = [("timeout", str(timeout_ms)), ("filter", SYNC_FILTER)]
        if self.since is not None:
            params.append(("since", self.since))
        response = await self.ok("GET", "/sync", None, params)
        self._absorb(response)
        self.since = response["next_batch"]
        return dict(response)

    def _absorb(self, response: dict[str, Any]) -> None:
        rooms = response.get("rooms", {})
        for room_id, room in rooms.get("join", {}).items():
            self.joined.add(room_id)
            self.invites.pop(room_id, None)
            self.timeline.setdefault(room_id, []).extend(room.get("timeline", {}).get("events", []))
        for room_id, room in rooms.get("invite", {}).items():
            self.invites[room_id] = list(room.get("invite_state", {}).get("events", []))
        for room_id, room in rooms.get("leave", {}).items():
            self.joined.discard(room_id)
            self.invites.pop(room_id, None)
            self.timeline.setdefault(room_id, []).extend(room.get("timeline", {}).get("events", []))

    async def wait_for(
        self, predicate: Callable[[], T | None], timeout: float = 120, what: str = ""
    ) -> T:
        """Sync until ``predicate()`` (over this client's running picture) returns something
        truthy, and return it; fail after ``timeout`` seconds (a generous bound, not a timed
        assertion: the happy path returns as soon as the data is there)."""
        deadline = time.monotonic() + timeout
        while True:
            found = predicate()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.user_id}: timed out waiting for {what or predicate!r}; "
                    f"joined={sorted(self.joined)} invites={sorted(self.invites)}"
                )
            try:
                await self.sync_once()
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.5)

    # --- questions over the running picture ----------------------------------------------

    def events(self, room_id: str, event_type: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.timeline.get(room_id, [])
            if event_type is None or e.get("type") == event_type
        ]

    def find_event(
        self, room_id: str, event_type: str, check: Callable[[dict[str, Any]], bool] = bool
    ) -> dict[str, Any] | None:
        for event in self.events(room_id, event_type):
            if check(event):
                return event
        return None

    def message_bodies(self, room_id: str) -> list[str]:
        return [
            str(e.get("content", {}).get("body")) for e in self.events(room_id, "m.room.message")
        ]

    async def wait_for_message(
        self, room_id: str, body: str, timeout: float = 120
    ) -> dict[str, Any]:
        return await self.wait_for(
            lambda: self.find_event(
                room_id, "m.room.message", lambda e: e.get("content", {}).get("body") == body
            ),
            timeout,
            f"message {body!r} in {room_id}",
        )

    async def wait_for_invite(self, room_id: str, timeout: float = 120) -> list[dict[str, Any]]:
        return await self.wait_for(
            lambda: self.invites.get(room_id), timeout, f"an invite to {room_id}"
        )
