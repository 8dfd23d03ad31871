"""The access log: one line per request, with the requester, never a token or password."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from homeserver.config import HomeserverConfig
from tests.accounts.helpers import PASSWORD, login, open_registration_config, registered_user
from tests.harness import TestServer


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return open_registration_config(tmp_path)


async def test_lines_name_requester_and_hide_secrets(
    server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user = await registered_user(server, "alice")
    _, logged_in = await login(server, "alice")
    status, _ = await server.call(
        "GET", "/account/whoami", params={"access_token": user.access_token, "x": "1"}
    )
    assert status == 200
    await server.call("GET", "/no/such/thing")
    # aiohttp's own access log is switched off in homeserver.app (it prints query strings); only
    # the test client's server still writes it.
    text = "\n".join(r.getMessage() for r in caplog.records if r.name != "aiohttp.access")
    for secret in (user.access_token, logged_in["access_token"], PASSWORD):
        assert secret not in text
    access = [r.getMessage() for r in caplog.records if r.name == "homeserver.access"]
    whoami = [line for line in access if "/account/whoami" in line]
    assert len(whoami) == 1
    assert "{@alice:test.example} 200" in whoami[0]
    assert "access_token=<redacted>" in whoami[0] and "x=1" in whoami[0]
    assert any('"POST /_matrix/client/v3/login"' in line and " 200 " in line for line in access)
    assert any("/no/such/thing" in line and " 404 " in line for line in access)
