"""The one bare client-server API client over aiohttp, for tests that drive a server over real
HTTP (a ``homeserver run`` process, a crash server, Synapse): ``call`` answers ``(status, body)``
whatever the status, ``ok`` insists on a 200. Per-user clients with a picture of /sync
(tests/federation/cs_client.py) and nio (tests/real_clients/) sit on top of it or beside it;
in-process tests use ``TestServer.call`` (tests/harness.py) instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp

CS = "/_matrix/client/v3"


def q(value: str) -> str:
    """``value`` as one path segment (room IDs, aliases and user IDs hold ``!#@:``)."""
    return quote(value, safe="")


class Client:
    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        json: Any = None,
        params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        """``(status, body)``; paths not starting with ``/_`` get ``/_matrix/client/v3``; a
        body that is not JSON comes back as text."""
        if not path.startswith("/_"):
            path = CS + path
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Without a timeout of its own the request keeps the session's.
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = aiohttp.ClientTimeout(total=timeout)
        async with self.session.request(
            method, self.base_url + path, json=json, params=params, headers=headers, **extra
        ) as response:
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = await response.text()
            return response.status, body

    async def ok(
        self, method: str, path: str, token: str | None = None, json: Any = None
    ) -> Any:
        """The body of a 200 answer (anything else fails the test, naming the request)."""
        status, body = await self.call(method, path, token, json=json)
        assert status == 200, (method, path, status, body)
        return body

    async def register(self, username: str, password: str | None = None) -> tuple[str, str]:
        """Register through the dummy UIA stage; ``(user_id, access_token)``."""
        body: dict[str, Any] = {
            "username": username,
            "password": password or f"{username}-pw-0123456789",
        }
        status, answer = await self.call("POST", "/register", json=body)
        if status == 401:
            body["auth"] = {"type": "m.login.dummy", "session": answer["session"]}
            status, answer = await self.call("POST", "/register", json=body)
        assert status == 200, answer
        return answer["user_id"], answer["access_token"]

    async def login(self, username: str, password: str) -> str:
        status, answer = await self.call(
            "POST",
            "/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": username},
                "password": password,
            },
        )
        assert status == 200, answer
        return str(answer["access_token"])
