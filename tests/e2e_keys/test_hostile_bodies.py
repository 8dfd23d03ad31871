"""Valid /keys bodies (signed as a client signs them) with one part replaced by something
hostile — wrong types, NUL, lone surrogates, huge numbers, deep nesting — are answered with a
Matrix 4xx or accepted, never a 500 (both engines)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from signedjson.sign import sign_json

from tests.e2e_keys.helpers import CrossSigning, Device
from tests.fuzz.strategies import dumps_json, json_values
from tests.harness import TestServer as Server
from tests.harness import TestUser as User

_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "max_examples": 150,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value that can be replaced (the root excluded)."""
    found: list[tuple[Any, ...]] = []
    children = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else []
    )
    for key, child in children:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    copied = copy.deepcopy(value)
    target = copied
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return copied


async def _setup(server: Server) -> tuple[User, dict[str, dict[str, Any]]]:
    cached = getattr(server, "_hostile_keys", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    alice = await server.register("alice")
    bob = await server.register("bob")
    device = Device(alice.user_id, alice.device_id)
    cs = CrossSigning(alice.user_id)
    bob_cs = CrossSigning(bob.user_id)
    bodies = {
        "/keys/upload": {
            "device_keys": device.device_keys(),
            "one_time_keys": device.one_time_keys(2),
            "fallback_keys": {"signed_curve25519:F": device.one_time_key("F", fallback=True)},
        },
        "/keys/query": {"device_keys": {alice.user_id: [alice.device_id]}, "timeout": 1000},
        "/keys/claim": {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}},
        "/keys/device_signing/upload": cs.upload_body(),
        "/keys/signatures/upload": {
            alice.user_id: {
                alice.device_id: sign_json(device.device_keys(), alice.user_id, cs.self_signing),
                cs.master.version: device.sign(cs.master_key()),
            },
            bob.user_id: {
                bob_cs.master.version: sign_json(
                    bob_cs.master_key(), alice.user_id, cs.user_signing
                )
            },
        },
    }
    # Real keys in place first, so the mutated bodies meet the deeper checks.
    for path in ("/keys/upload", "/keys/device_signing/upload"):
        status, answer = await server.call("POST", path, alice, json=bodies[path])
        assert status == 200, answer
    await server.call("POST", "/keys/device_signing/upload", bob, json=bob_cs.upload_body())
    server._hostile_keys = (alice, bodies)  # type: ignore[attr-defined]
    return alice, bodies


@settings(**_SETTINGS)
@given(data=st.data())
async def test_mutated_key_bodies_never_500(server: Server, data: st.DataObject) -> None:
    alice, bodies = await _setup(server)
    path = data.draw(st.sampled_from(sorted(bodies)), label="path")
    body = bodies[path]
    where = data.draw(st.sampled_from(paths(body)), label="where")
    value = data.draw(json_values, label="value")
    response = await server.client.post(
        "/_matrix/client/v3" + path,
        data=dumps_json(replaced(body, where, value)),
        headers={
            "Authorization": f"Bearer {alice.access_token}",
            "Content-Type": "application/json",
        },
    )
    text = await response.text()
    # 401: a replaced master key asks for the password.
    assert response.status in (200, 400, 401, 404, 413), (path, where, value, text)
    if response.status != 200:
        assert '"errcode":"M_' in text.replace(" ", ""), text
