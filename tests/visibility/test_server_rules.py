"""The server side of history visibility lives beside the client side in
:mod:`homeserver.visibility`: the pure per-event rule (table-driven, no database) and the batch
judging that federation serving calls."""

from __future__ import annotations

import inspect

import pytest

from homeserver.federation import serving
from homeserver.visibility import server
from homeserver.visibility.rules import event_visible_to_server, server_may_see

# (visibility at the event, memberships there of the asking server's users) → visible to a
# server with a user joined now.
CASES: list[tuple[object, list[str | None], bool]] = [
    ("world_readable", [], True),
    ("world_readable", ["ban"], True),
    ("shared", [], True),
    ("shared", ["ban"], True),
    (None, [], True),
    (42, [], True),
    ("invited", [], False),
    ("invited", ["invite"], True),
    ("invited", ["knock"], False),
    ("invited", ["leave", "join"], True),
    ("joined", [], False),
    ("joined", ["invite"], False),
    ("joined", ["leave", None], False),
    ("joined", ["ban", "join"], True),
]


@pytest.mark.parametrize(("visibility", "memberships", "visible"), CASES)
def test_server_rule(visibility: object, memberships: list[str | None], visible: bool) -> None:
    assert server_may_see(visibility, memberships) is visible
    assert event_visible_to_server(visibility, memberships, sender_erased=False) is visible
    assert event_visible_to_server(visibility, memberships, sender_erased=True) is False


def test_federation_serving_asks_the_visibility_module() -> None:
    # One module decides for both audiences: serving keeps no rule of its own.
    assert serving.event_visible_to_server is event_visible_to_server
    assert serving.server_may_see is server_may_see
    assert inspect.iscoroutinefunction(server.hidden_from)
    assert not hasattr(serving.FederationEventServer, "hidden_from")
