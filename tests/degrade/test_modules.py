"""Operator modules from ``modules:``: loaded at start-up, hearing the lifecycle events, and
never failing an operation; one that cannot load stops start-up with a config error."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from homeserver.app import Homeserver, create_app
from homeserver.config import ConfigError
from homeserver.crypto.signing import generate_signing_key
from homeserver.storage import Store
from tests.degrade.sample_modules import RecordingModule
from tests.harness import TestServer as Server
from tests.harness import make_config

RECORDING = "tests.degrade.sample_modules.RecordingModule"
FAILING = "tests.degrade.sample_modules.FailingModule"


def _hs(tmp_path: Path, store: Store, *modules: str) -> Homeserver:
    config = make_config(
        tmp_path, modules=[{"module": m, "config": {"level": i}} for i, m in enumerate(modules)]
    )
    return Homeserver(config, generate_signing_key("a_test"), store)


async def test_modules_hear_lifecycle_and_failures_do_not_fail_it(
    tmp_path: Path, store: Store
) -> None:
    hs = _hs(tmp_path, store, FAILING, RECORDING)
    recording = hs.modules[1]
    assert isinstance(recording, RecordingModule)
    assert recording.config == {"level": 1} and recording.server_name == hs.server_name
    async with TestClient(TestServer(create_app(hs))) as client:
        server = Server(hs, client)
        alice = await server.register("alice")
        status, body = await server.call("POST", "/createRoom", alice, json={})
        assert status == 200, body  # the failing module did not fail it
        room_id = body["room_id"]
        status, body = await server.call(
            "POST", f"/rooms/{room_id}/upgrade", alice, json={"new_version": "11"}
        )
        assert status == 200, body
    names = [e.name for e in recording.seen]
    assert names == ["room.created", "room.upgraded"]
    assert recording.seen[0].payload["room_id"] == room_id


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("tests.degrade.no_such_module.Thing", "cannot import"),
        ("tests.degrade.sample_modules.NoSuchClass", "cannot import"),
        ("tests.degrade.sample_modules.BrokenAtStart", "failed to start: missing setting 'x'"),
    ],
)
def test_module_that_cannot_load_stops_start_up(
    tmp_path: Path, store: Store, module: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        _hs(tmp_path, store, module)
    assert "modules[0].module" in str(raised.value)
