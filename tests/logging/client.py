"""A bare client-server API client over aiohttp, for tests that drive a real server process."""

from __future__ import annotations

from typing import Any

import aiohttp


class Client:
    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """``(status, body)``; paths not starting with ``/_`` get ``/_matrix/client/v3``."""
        if not path.startswith("/_"):
            path = "/_matrix/client/v3" + path
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(
            method, self.base_url + path, json=json, params=params, headers=headers
        ) as response:
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = await response.text()
            return response.status, body

    async def register(self, username: str, password: str) -> tuple[str, str]:
        """Register through the dummy UIA stage; ``(user_id, access_token)``."""
        body: dict[str, Any] = {"username": username, "password": password}
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
