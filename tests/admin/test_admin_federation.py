"""``/_synapse/admin/v1/federation/destinations``: list, one destination, reset_connection."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.storage.outbox import RetryState
from tests.admin.helpers import V1
from tests.harness import TestServer

PATH = f"{V1}/federation/destinations"


async def _seed(server: TestServer) -> None:
    outbox = server.hs.store.outbox
    await outbox.set_retry_state(RetryState("alpha.example", None, 0, 0))
    await outbox.set_retry_state(RetryState("beta.example", 1_000, 5_000, 60_000))
    await outbox.set_retry_state(RetryState("gamma.example", 2_000, 9_000, 10_000))


async def test_list_get_and_order(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    await _seed(server)
    status, body = await server.call("GET", PATH, admin)
    assert status == 200, body
    assert body["total"] == 3 and "next_token" not in body
    assert body["destinations"][1] == {
        "destination": "beta.example",
        "retry_last_ts": 5_000,
        "retry_interval": 60_000,
        "failure_ts": 1_000,
        "last_successful_stream_ordering": None,
    }
    assert [d["destination"] for d in body["destinations"]] == [
        "alpha.example",
        "beta.example",
        "gamma.example",
    ]

    async def order(**params: str) -> list[str]:
        status, answer = await server.call("GET", PATH, admin, params=params)
        assert status == 200, answer
        return [d["destination"] for d in answer["destinations"]]

    assert await order(order_by="retry_interval", dir="b") == [
        "beta.example",
        "gamma.example",
        "alpha.example",
    ]
    # Healthy destinations (no failure_ts) last.
    assert await order(order_by="failure_ts") == ["beta.example", "gamma.example", "alpha.example"]
    assert await order(destination="amm") == ["gamma.example"]
    status, page = await server.call("GET", PATH, admin, params={"limit": "1", "from": "1"})
    assert [d["destination"] for d in page["destinations"]] == ["beta.example"]
    assert page["next_token"] == "2"

    status, one = await server.call("GET", f"{PATH}/gamma.example", admin)
    assert status == 200 and one["retry_last_ts"] == 9_000 and one["failure_ts"] == 2_000
    status, missing = await server.call("GET", f"{PATH}/nowhere.example", admin)
    assert status == 404 and missing["errcode"] == "M_NOT_FOUND"


@pytest.mark.parametrize("params", [{"order_by": "bogus"}, {"from": "x"}, {"dir": "sideways"}])
async def test_bad_parameters(server: TestServer, params: dict[str, str]) -> None:
    admin = await server.register("root", admin=True)
    status, body = await server.call("GET", PATH, admin, params=params)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"


async def test_reset_connection_clears_backoff_and_wakes_the_sender(
    server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await server.register("root", admin=True)
    await _seed(server)
    calls: list[tuple[str, Any]] = []
    sender = server.hs.federation_sender
    monkeypatch.setattr(sender, "wake", lambda ds=(): calls.append(("wake", list(ds))))
    monkeypatch.setattr(
        sender, "on_destination_reachable", lambda d: calls.append(("reachable", d))
    )
    status, body = await server.call("POST", f"{PATH}/beta.example/reset_connection", admin)
    assert status == 200 and body == {}
    state = await server.hs.store.outbox.get_retry_state("beta.example")
    assert state == RetryState("beta.example", None, 0, 0)
    assert calls == [("reachable", "beta.example"), ("wake", ["beta.example"])]
    # Nothing to reset any more (as Synapse: 400), and unknown destinations are 404.
    status, body = await server.call("POST", f"{PATH}/beta.example/reset_connection", admin)
    assert status == 400, body
    status, body = await server.call("POST", f"{PATH}/nowhere.example/reset_connection", admin)
    assert status == 404
