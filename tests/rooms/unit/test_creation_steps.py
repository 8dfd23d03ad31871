"""The room-creation steps alone (no database): validation, build, audit line, metrics text."""

from __future__ import annotations

import itertools
import json

import pytest
from signedjson.key import generate_signing_key

from homeserver.errors import MatrixError
from homeserver.events.builder import Signer
from homeserver.metrics import HomeserverMetrics, room_metrics_subscriber
from homeserver.rooms import creation
from homeserver.rooms.audit import audit_line
from homeserver.rooms.bus import ROOM_CREATED, ROOM_UPGRADE_FAILED, DomainEvent
from homeserver.rooms.creation_plan import CreationPolicy

CREATOR = "@alice:example.org"
SIGNER = Signer("example.org", generate_signing_key("k"))


def _validate(body: dict, **kw):
    return creation.validate_request(
        creation.parse_body(body),
        creator=CREATOR,
        server_name="example.org",
        default_room_version=kw.pop("default", "12"),
        **kw,
    )


def test_default_and_explicit_room_version():
    assert _validate({}).room_version.identifier == "12"
    assert _validate({}, default="10").room_version.identifier == "10"
    assert _validate({"room_version": "1"}).room_version.identifier == "1"


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"room_version": "13"}, "M_UNSUPPORTED_ROOM_VERSION"),
        ({"invite": [CREATOR]}, "M_INVALID_PARAM"),
        ({"room_alias_name": "a" * 250}, "M_INVALID_PARAM"),
        (
            {
                "invite_3pid": [
                    {"id_server": "i", "id_access_token": "t", "medium": "email", "address": "a"}
                ]
            },
            "M_INVALID_PARAM",
        ),
        ({"creation_content": {"additional_creators": [5]}}, "M_INVALID_PARAM"),
    ],
)
def test_validation_refusals(body: dict, errcode: str):
    with pytest.raises(MatrixError) as caught:
        _validate(body)
    assert caught.value.errcode == errcode


def test_additional_creators_only_checked_where_they_mean_something():
    # before v12 the key is ordinary creation content
    assert _validate({"room_version": "11", "creation_content": {"additional_creators": 5}})


def _build(body: dict, version: str = "12", room_id: str | None = "!r:example.org"):
    validated = _validate({"room_version": version, **body})
    plan = creation.plan(
        validated, creator=CREATOR, server_name="example.org", policy=CreationPolicy()
    )
    ticks = itertools.count(1000)
    return creation.build_genesis(plan, SIGNER, room_id, lambda: next(ticks))


def test_build_v12_room_id_is_the_create_hash():
    events = _build({"name": "x"})
    assert events[0].room_id == "!" + events[0].event_id[1:]
    assert all(e.room_id == events[0].room_id for e in events)


def test_build_v11_uses_the_given_room_id():
    events = _build({}, version="11")
    assert {e.room_id for e in events} == {"!r:example.org"}


def test_build_refusal_names_the_event():
    override = {"events": {"m.room.name": 200}, "users": {CREATOR: 50}}
    with pytest.raises(MatrixError) as caught:
        _build({"name": "n", "power_level_content_override": override}, version="11")
    assert caught.value.errcode == "M_INVALID_ROOM_STATE"
    assert "m.room.name" in caught.value.message


def test_audit_line_keeps_only_known_scalars():
    line = audit_line(
        DomainEvent(ROOM_CREATED, {"room_id": "!r", "access_token": "secret", "preset": "p"})
    )
    assert json.loads(line) == {"event": "room.created", "room_id": "!r", "preset": "p"}


def test_metrics_text():
    metrics = HomeserverMetrics("example.org")
    subscriber = room_metrics_subscriber(metrics)
    subscriber(DomainEvent(ROOM_CREATED))
    subscriber(DomainEvent(ROOM_CREATED))
    subscriber(DomainEvent(ROOM_UPGRADE_FAILED))
    metrics.transaction_finished("create_room", 0.2)
    metrics.transaction_finished("create_room", 0.3)
    body, content_type = metrics.render()
    text = body.decode()
    assert content_type.startswith("text/plain; version=0.0.4")
    assert "# TYPE homeserver_room_operations_total counter" in text
    assert (
        'homeserver_room_operations_total{operation="create",outcome="room_created",'
        'server_name="example.org"} 2.0'
    ) in text
    assert 'outcome="room_upgrade_failed",server_name="example.org"} 1.0' in text
    assert (
        'synapse_storage_transaction_time_count{desc="create_room",server_name="example.org"} 2.0'
        in text
    )
    assert text.endswith("\n")
