"""Invites received over federation count against ``rc_invites.per_user`` of the invitee only,
as in Synapse (the sending server limits per room): 429 past the burst."""

from __future__ import annotations

from pathlib import Path

import pytest

from homeserver.config import HomeserverConfig
from tests.federation.received_helpers import Remote, signed_request
from tests.federation.test_invites import _invite_path, _remote_room
from tests.harness import TestServer as Server
from tests.harness import make_config


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return make_config(
        tmp_path, rc_invites={"per_user": {"per_second": 0.0001, "burst_count": 2}}
    )


async def test_received_invites_per_invitee(server: Server) -> None:
    bob = await server.register("bob")
    carol = await server.register("carol")
    remote = Remote()
    await remote.seed_key(server.hs)
    statuses = []
    for version_id in ("10", "11", "12"):
        state, invite = _remote_room(remote, version_id, bob.user_id)
        body = {"room_version": version_id, "event": invite, "invite_room_state": state}
        status, answer = await signed_request(
            server, remote, "PUT", _invite_path(version_id, invite), body
        )
        statuses.append(status)
    assert statuses == [200, 200, 429]
    assert answer["errcode"] == "M_LIMIT_EXCEEDED"
    state, invite = _remote_room(remote, "12", carol.user_id)
    body = {"room_version": "12", "event": invite, "invite_room_state": state}
    status, _ = await signed_request(server, remote, "PUT", _invite_path("12", invite), body)
    assert status == 200
