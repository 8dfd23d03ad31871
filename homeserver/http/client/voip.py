"""``GET /voip/turnServer``: TURN servers and credentials for calls, as Synapse answers it.

With ``turn_shared_secret`` each user gets credentials of their own that expire after
``turn_user_lifetime``; with fixed ``turn_username``/``turn_password`` everyone gets those;
without ``turn_uris`` (or credentials) the answer is ``{}``, which clients read as "no TURN".
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.config import VoipConfig
from homeserver.crypto.turn import turn_credentials
from homeserver.http.appkeys import CLOCK, CONFIG
from homeserver.http.auth import get_requester
from homeserver.http.json_body import json_response
from homeserver.http.routes import add_client_route


def turn_server_answer(voip: VoipConfig, user_id: str, now_ms: int) -> dict[str, Any]:
    lifetime_ms = voip.turn_user_lifetime_ms
    if voip.turn_uris and voip.turn_shared_secret:
        expires_s = (now_ms + lifetime_ms) // 1000
        username, password = turn_credentials(voip.turn_shared_secret, user_id, expires_s)
    elif voip.turn_uris and voip.turn_username and voip.turn_password:
        username, password = voip.turn_username, voip.turn_password
    else:
        return {}
    return {
        "username": username,
        "password": password,
        "ttl": lifetime_ms // 1000,
        "uris": list(voip.turn_uris),
    }


async def turn_server(request: web.Request) -> web.Response:
    requester = await get_requester(request)
    answer = turn_server_answer(request.app[CONFIG].voip, requester.user_id, request.app[CLOCK]())
    return json_response(answer)


def add_routes(router: web.UrlDispatcher) -> None:
    add_client_route(router, "GET", "/voip/turnServer", turn_server)
