"""``/_synapse/metrics`` after scripted workloads, on both engines: every value is the one the
workload implies; the exposition parses with prometheus_client's parsers; only listeners with
the ``metrics`` resource (and ``enable_metrics``) serve it; contrib/prometheus/alerts.yml only
names metrics we export."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from homeserver.app import Homeserver, create_app, serve, start_homeserver
from homeserver.config import HomeserverConfig
from homeserver.federation.client import FederationHttpError, FederationUnreachable
from homeserver.federation.sender import FederationSender
from homeserver.metrics import ROOM_OPERATIONS
from tests.accounts.helpers import open_registration_config, registered_user
from tests.builders import HIGH_LIMIT, create_public_room
from tests.federation.fake_remote import free_port
from tests.federation.received_helpers import Remote
from tests.harness import SERVER_NAME, make_config
from tests.harness import TestServer as Server
from tests.harness import TestUser as User

ALERTS = Path(__file__).resolve().parents[2] / "contrib" / "prometheus" / "alerts.yml"
CLIENT = "/_matrix/client/v3"
SEND = f"{CLIENT}/rooms/{{room_id}}/send/{{event_type}}/{{txn_id}}"
UPGRADE = f"{CLIENT}/rooms/{{room_id}}/upgrade"
METRICS = "/_synapse/metrics"
VERSIONS = "/_matrix/client/versions"
#: Three room creations (upgrades included) and then never another: per_second 0.
ROOM_CREATION_BURST = 3

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return open_registration_config(
        tmp_path,
        rc_room_creation={"per_second": 0, "burst_count": ROOM_CREATION_BURST},
        rc_message=HIGH_LIMIT,
        rc_joins={"local": HIGH_LIMIT},
    )


def _key(name: str, labels: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


async def scrape(server: Server) -> tuple[str, Samples]:
    status, text = await server.call("GET", METRICS)
    assert status == 200, text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            assert s.labels.get("server_name") == SERVER_NAME, s  # every sample, as Synapse
            labels = {k: v for k, v in s.labels.items() if k != "server_name"}
            samples[_key(s.name, labels)] = s.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get(_key(name, labels), 0.0)


def matching(
    samples: Samples, name: str, **labels: str
) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of ``name`` whose labels include ``labels``, by their full label set."""
    wanted = set(labels.items())
    return {k[1]: v for k, v in samples.items() if k[0] == name and wanted <= set(k[1])}


# --- the scripted client workload ---------------------------------------------------------------
async def _workload(server: Server) -> tuple[User, str, str]:
    """Register two users; create two rooms; send two messages; bob's upgrade is refused (403);
    alice's upgrade succeeds (the third room creation); her next createRoom and upgrade are
    rate limited (429)."""
    alice = await registered_user(server, "alice")
    bob = await registered_user(server, "bob")
    results = []
    status, body = await server.call("POST", "/createRoom", alice, json={"room_version": "11"})
    results.append(status)
    old_room = body["room_id"]
    status, body = await server.call("POST", "/createRoom", alice, json={})
    results.append(status)
    other_room = body["room_id"]
    for n in range(2):
        status, _ = await server.call(
            "PUT",
            f"/rooms/{old_room}/send/m.room.message/t{n}",
            alice,
            json={"msgtype": "m.text", "body": f"hello {n}"},
        )
        results.append(status)
    status, _ = await server.call(
        "POST", f"/rooms/{other_room}/upgrade", bob, json={"new_version": "12"}
    )
    results.append(status)
    status, body = await server.call(
        "POST", f"/rooms/{old_room}/upgrade", alice, json={"new_version": "12"}
    )
    results.append(status)
    new_room = body["replacement_room"]
    status, _ = await server.call("POST", "/createRoom", alice, json={})
    results.append(status)
    status, _ = await server.call(
        "POST", f"/rooms/{other_room}/upgrade", alice, json={"new_version": "12"}
    )
    results.append(status)
    assert results == [200, 200, 200, 200, 403, 200, 429, 429]
    return alice, old_room, new_room


async def test_room_operations_after_the_workload(server: Server) -> None:
    await _workload(server)
    _text, samples = await scrape(server)
    operations = matching(samples, ROOM_OPERATIONS)
    assert operations == {
        (("operation", "create"), ("outcome", "room_created")): 2,
        (("operation", "create"), ("outcome", "rate_limited")): 1,
        (("operation", "upgrade"), ("outcome", "room_upgraded")): 1,
        (("operation", "upgrade"), ("outcome", "room_upgrade_failed")): 1,
        (("operation", "upgrade"), ("outcome", "rate_limited")): 1,
    }
    # The alert's error rate over this workload: (1 failed + 2 rate limited) / 6 operations.
    failing = {"room_upgrade_failed", "rate_limited"}
    errors = sum(v for k, v in operations.items() if dict(k)["outcome"] in failing)
    assert errors / sum(operations.values()) == 3 / 6


async def test_http_metrics_after_the_workload(server: Server) -> None:
    await _workload(server)
    _text, samples = await scrape(server)
    received = "synapse_http_server_requests_received_total"
    assert value(samples, received, method="POST", servlet=f"{CLIENT}/register") == 2
    assert value(samples, received, method="POST", servlet=f"{CLIENT}/createRoom") == 3
    assert value(samples, received, method="PUT", servlet=SEND) == 2
    assert value(samples, received, method="POST", servlet=UPGRADE) == 3
    assert value(samples, received, method="GET", servlet=METRICS) == 1  # this scrape
    timed = "synapse_http_server_response_time_seconds_count"
    assert matching(samples, timed, servlet=f"{CLIENT}/createRoom") == {
        (("code", "200"), ("method", "POST"), ("servlet", f"{CLIENT}/createRoom")): 2,
        (("code", "429"), ("method", "POST"), ("servlet", f"{CLIENT}/createRoom")): 1,
    }
    assert {dict(k)["code"]: v for k, v in matching(samples, timed, servlet=UPGRADE).items()} == {
        "200": 1,
        "403": 1,
        "429": 1,
    }
    bucket = "synapse_http_server_response_time_seconds_bucket"
    assert value(samples, bucket, method="PUT", servlet=SEND, code="200", le="+Inf") == 2
    assert (
        value(
            samples,
            "synapse_http_server_response_time_seconds_sum",
            method="PUT",
            servlet=SEND,
            code="200",
        )
        > 0
    )
    responses = matching(samples, "synapse_http_server_responses_total")
    assert {(dict(k)["method"], dict(k)["code"]): v for k, v in responses.items()} == {
        ("POST", "200"): 5,  # 2 registrations, 2 rooms, 1 upgrade
        ("POST", "403"): 1,
        ("POST", "429"): 2,
        ("PUT", "200"): 2,
    }
    # Only the scrape itself is in flight while it renders.
    in_flight = matching(samples, "synapse_http_server_in_flight_requests_count")
    assert {dict(k)["servlet"]: v for k, v in in_flight.items() if v} == {METRICS: 1}


async def test_storage_metrics_after_the_workload(server: Server) -> None:
    hs = server.hs
    # Migrations ran before the server (and its metrics) existed.
    before = {name: stats.count for name, stats in hs.store.db.stats.items()}
    _alice, old_room, new_room = await _workload(server)
    _text, samples = await scrape(server)
    stored = int(await hs.store.db.fetchval("SELECT COUNT(*) FROM events"))
    assert value(samples, "synapse_storage_events_persisted_events_total") == stored
    sep = matching(samples, "synapse_storage_events_persisted_events_sep_total")
    assert sum(sep.values()) == stored
    assert {dict(k)["origin_type"] for k in sep} == {"local"}

    def of_type(event_type: str) -> dict[str, float]:
        return {dict(k)["room_version"]: v for k, v in sep.items() if dict(k)["type"] == event_type}

    assert of_type("m.room.create") == {"11": 1, "12": 2}  # two rooms and the replacement
    assert of_type("m.room.message") == {"11": 2}
    assert of_type("m.room.tombstone") == {"11": 1}
    assert of_type("m.room.redaction") == {}
    # Transactions by name: the histogram counts what Database.stats counts.
    assert hs.store.db.stats.keys() - before.keys()
    for name, stats in hs.store.db.stats.items():
        count = stats.count - before.get(name, 0)
        assert value(samples, "synapse_storage_transaction_time_count", desc=name) == count
        assert value(samples, "synapse_storage_transaction_time_bucket", desc=name, le="+Inf") == (
            count
        )
        assert value(samples, "homeserver_storage_transaction_failures_total", desc=name) == (
            stats.failures
        )
    create = hs.store.db.stats["create_room"]
    assert create.count == 2 + create.retries  # the rate-limited one never reached the database
    assert value(samples, "synapse_storage_transaction_time_sum", desc="create_room") > 0
    # Lock waits of event persistence: a room's row lock for each send into an existing room,
    # the stream-position allocation for every batch (createRoom's included).
    assert value(samples, "homeserver_storage_lock_wait_seconds_count", lock="room") >= 2
    events_allocations = value(
        samples, "homeserver_storage_lock_wait_seconds_count", lock="stream_id:events"
    )
    assert events_allocations >= create.count + 2
    assert old_room != new_room


async def test_exposition_parses_in_both_formats(server: Server) -> None:
    await _workload(server)
    text, _samples = await scrape(server)
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"homeserver_room_operations", "synapse_storage_transaction_time"} <= names
    assert "process_cpu_seconds" in names and "homeserver_build_info" in names
    assert not any(name.endswith("_created") for name in names)
    response = await server.client.get(
        METRICS, headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in openmetrics_families(await response.text())}
    operations = families["homeserver_room_operations"]
    assert operations.type == "counter"
    assert sum(s.value for s in operations.samples if s.name.endswith("_total")) == 6
    plain = await server.client.get(METRICS)
    assert plain.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"


async def test_servlet_labels_are_route_patterns_not_paths(server: Server) -> None:
    alice = await server.register("alice")
    for n in range(3):
        await server.call("GET", f"/rooms/!nowhere{n}:{SERVER_NAME}/state", alice)
        await server.call("GET", f"/no/such/path/{n}")
    await server.client.request("PROPFIND", VERSIONS)
    _text, samples = await scrape(server)
    received = matching(samples, "synapse_http_server_requests_received_total")
    servlets = {dict(k)["servlet"] for k in received}
    assert f"{CLIENT}/rooms/{{room_id}}/state" in servlets
    assert not any("nowhere" in s or "/no/such" in s for s in servlets)
    assert (
        value(
            samples,
            "synapse_http_server_requests_received_total",
            method="GET",
            servlet="unmatched",
        )
        == 3
    )
    # An arbitrary method is not a label value of its own.
    assert {dict(k)["method"] for k in received} == {"GET", "other"}


# --- federation ---------------------------------------------------------------------------------
async def test_inbound_transactions_and_soft_failed_events(server: Server) -> None:
    hs = server.hs
    alice = await server.register("alice")
    room_id = await create_public_room(server, alice)
    remote = Remote()
    await remote.seed_key(hs)
    await remote.join(hs, room_id)
    join_id = (await hs.store.events.get_forward_extremities(room_id)).event_ids[0]
    before_ban = await hs.store.state.get_current_state_ids(room_id)
    status, body = await server.call(
        "POST", f"/rooms/{room_id}/ban", alice, json={"user_id": remote.user("r")}
    )
    assert status == 200, body
    # The remote had not seen the ban: its message follows its own join, so it is soft-failed.
    event_id, pdu = await remote.build(
        hs,
        room_id,
        type="m.room.message",
        sender=remote.user("r"),
        content={"msgtype": "m.text", "body": "late"},
        prev_events=[join_id],
        auth_state=before_ban,
    )
    unknown_room = dict(pdu, room_id=f"!elsewhere:{remote.name}")
    edus = [{"edu_type": "m.typing", "content": {}}] * 3
    txn = {"origin": remote.name, "origin_server_ts": 1, "pdus": [pdu, unknown_room], "edus": edus}
    answer = await hs.federation_transactions.on_send(remote.name, "t1", txn)
    assert answer["pdus"][event_id] == {}
    # A retry of the same transaction is answered from storage and not counted again.
    assert await hs.federation_transactions.on_send(remote.name, "t1", txn) == answer
    stored = await hs.store.events.get_event(event_id)
    assert stored is not None and stored.internal.soft_failed
    _text, samples = await scrape(server)
    assert value(samples, "synapse_federation_server_received_pdus_total") == 2
    assert value(samples, "synapse_federation_server_received_edus_total") == 3
    assert value(samples, "synapse_federation_soft_failed_events_total") == 1
    remote_events = matching(
        samples, "synapse_storage_events_persisted_events_sep_total", origin_type="remote"
    )
    # The remote's join (and the outliers its auth chain needed, if any) and the soft-failed one.
    remote_count = int(
        await hs.store.db.fetchval(
            "SELECT COUNT(*) FROM events WHERE sender LIKE ?", f"%:{remote.name}"
        )
    )
    assert sum(remote_events.values()) == remote_count >= 2


class _Peer:
    """Answers /send from a script: an exception, or the JSON body."""

    def __init__(self, answers: Iterable[Any]) -> None:
        self.answers = list(answers)

    async def put_json(self, destination: str, path: str, content: Any, **_: Any) -> Any:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def _queue_edus(hs: Homeserver, destination: str, count: int) -> None:
    async with hs.store.db.transaction("test_queue_edus") as txn:
        await hs.store.outbox.enqueue_many_txn(
            txn,
            [(destination, {"kind": "edu", "edu_type": "m.typing", "content": {}})] * count,
            now=hs.clock(),
        )


async def test_outbound_transactions_and_queue_depth(server: Server) -> None:
    hs = server.hs
    peer = _Peer(
        [
            FederationUnreachable("connection refused"),
            FederationHttpError(502, None, None, None),
            {"pdus": {}},
            FederationHttpError(400, "M_BAD_JSON", "no", None),
        ]
    )
    sender = FederationSender(
        hs.store,
        peer,  # type: ignore[arg-type]
        hs.config.federation,
        hs.clock,
        hs.server_name,
        hs.signer,
        metrics=hs.metrics,
        jitter=lambda: 1.0,
    )
    await _queue_edus(hs, "down.example", 2)
    await _queue_edus(hs, "up.example", 1)
    _text, samples = await scrape(server)
    assert value(samples, "synapse_federation_transaction_queue_pending_destinations") == 2
    assert matching(samples, "homeserver_federation_queue_pending") == {
        (("destination", "down.example"),): 2,
        (("destination", "up.example"),): 1,
    }
    assert await sender.send_next("down.example")  # unreachable
    assert await sender.send_next("down.example")  # 502
    assert await sender.send_next("down.example")  # delivered
    await _queue_edus(hs, "down.example", 1)
    assert await sender.send_next("down.example")  # refused for good: dropped
    _text, samples = await scrape(server)
    outcomes = matching(samples, "homeserver_federation_transactions_total")
    assert {(dict(k)["destination"], dict(k)["outcome"]): v for k, v in outcomes.items()} == {
        ("down.example", "failed"): 2,
        ("down.example", "sent"): 1,
        ("down.example", "refused"): 1,
    }
    assert value(samples, "synapse_federation_client_sent_transactions_total") == 1
    assert value(samples, "synapse_federation_transaction_queue_pending_destinations") == 1
    assert matching(samples, "homeserver_federation_queue_pending") == {
        (("destination", "up.example"),): 1
    }


async def test_a_database_outage_does_not_fail_the_scrape(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _queue_edus(server.hs, "remote.example", 2)
    _text, samples = await scrape(server)
    assert value(samples, "homeserver_federation_queue_pending", destination="remote.example") == 2

    async def unreachable() -> dict[str, int]:
        raise OSError("connection refused")

    monkeypatch.setattr(server.hs.store.outbox, "pending_by_destination", unreachable)
    _text, samples = await scrape(server)  # the last values known, still served
    assert value(samples, "homeserver_federation_queue_pending", destination="remote.example") == 2


# --- where metrics are served ---------------------------------------------------------------------
async def test_listeners_without_the_metrics_resource_do_not_serve_it(
    hs: Homeserver, aiohttp_client: Any
) -> None:
    for resources in ({"client"}, {"federation"}, {"client", "federation", "keys", "admin"}):
        client = await aiohttp_client(create_app(hs, resources))
        response = await client.get(METRICS)
        assert response.status == 404
        assert (await response.json())["errcode"] == "M_UNRECOGNIZED"
    metrics_only = await aiohttp_client(create_app(hs, {"metrics"}))
    assert (await metrics_only.get(METRICS)).status == 200
    assert (await metrics_only.get(VERSIONS)).status == 404


def test_enable_metrics_gates_the_metrics_resource(tmp_path: Path) -> None:
    listeners = [
        {"port": 8008, "resources": [{"names": ["client", "metrics"]}]},
        {"port": 9000, "type": "metrics"},
    ]
    off = make_config(tmp_path, listeners=listeners)
    assert [sorted(x.served_resources) for x in off.listeners] == [["admin", "client"]]
    assert len(off.warnings) == 2 and all("enable_metrics" in w for w in off.warnings)
    on = make_config(tmp_path, listeners=listeners, enable_metrics=True)
    assert [sorted(x.resources) for x in on.listeners] == [["client", "metrics"], ["metrics"]]
    assert on.warnings == ()


async def test_a_metrics_listener_serves_metrics_and_nothing_else(tmp_path: Path) -> None:
    client_port, metrics_port = free_port(), free_port()
    config = make_config(
        tmp_path,
        enable_metrics=True,
        listeners=[
            {"port": client_port, "resources": [{"names": ["client"]}]},
            {"port": metrics_port, "bind_addresses": ["127.0.0.1"], "type": "metrics"},
        ],
    )
    environ = {"HOMESERVER_SECRETS_KEY": "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s="}
    hs = await start_homeserver(config, environ=environ)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(hs, stop))
    try:
        async with aiohttp.ClientSession() as session:
            client_base = f"http://127.0.0.1:{client_port}"
            metrics_base = f"http://127.0.0.1:{metrics_port}"
            for _ in range(200):  # until both listeners are up (bounded, not timed)
                try:
                    async with session.get(f"{metrics_base}/health") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            async with session.get(f"{client_base}{VERSIONS}") as r:
                assert r.status == 200
            async with session.get(f"{client_base}{METRICS}") as r:
                assert r.status == 404
            async with session.get(f"{metrics_base}{VERSIONS}") as r:
                assert r.status == 404
            async with session.get(f"{metrics_base}{METRICS}") as r:
                assert r.status == 200
                text = await r.text()
        received = {
            s.labels["servlet"]: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "synapse_http_server_requests_received_total"
        }
        # The client listener's requests are counted too (one registry per server); the
        # requests for routes a listener does not serve are "unmatched".
        assert received[VERSIONS] == 1
        assert received[METRICS] == 1
        assert received["unmatched"] == 2
    finally:
        stop.set()
        await task
        await hs.store.db.close()


# --- contrib/prometheus/alerts.yml ----------------------------------------------------------------
_PROMQL_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
    }
)
#: Series Prometheus makes itself for every target.
_PROMETHEUS_SERIES = frozenset({"up"})


def metric_names_in(expr: str) -> set[str]:
    """The series names a PromQL expression selects (functions, keywords, label names and
    string literals left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        following = expr[match.end() :].lstrip()[:1]
        word = match.group()
        if following == "(" or word.lower() in _PROMQL_KEYWORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def exported_series_names(text: str) -> set[str]:
    """Every series name the exposition can hold, from its TYPE lines (so label sets that
    have not been seen yet still count)."""
    names = set()
    for line in text.splitlines():
        if not line.startswith("# TYPE "):
            continue
        _hash, _type, name, kind = line.split(" ", 3)
        suffixes = {"histogram": ("_bucket", "_count", "_sum"), "summary": ("", "_count", "_sum")}
        names.update(name + suffix for suffix in suffixes.get(kind, ("",)))
    return names


def test_promql_name_extraction() -> None:
    expr = (
        'sum by (server_name, le) (rate(a_total{code=~"5..", x="y{z}"}[5m])) / on (server_name)'
        " histogram_quantile(0.9, b_bucket) > 0.05 unless up == 0"
    )
    assert metric_names_in(expr) == {"a_total", "b_bucket", "up"}


async def test_alert_rules_name_only_exported_metrics(server: Server) -> None:
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    text, _samples = await scrape(server)
    exported = exported_series_names(text) | _PROMETHEUS_SERIES
    alerts = {}
    for group in rules["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            alerts[rule["alert"]] = rule
            names = metric_names_in(rule["expr"])
            assert names, rule["alert"]
            assert names <= exported, (rule["alert"], names - exported)
    lifecycle = alerts["HomeserverRoomLifecycleErrorRateHigh"]
    assert "homeserver_room_operations_total" in lifecycle["expr"]
    assert "[5m]" in lifecycle["expr"] and re.search(r">\s*0\.05\s*$", lifecycle["expr"].strip())
    for outcome in ("room_upgrade_failed", "rate_limited"):
        assert outcome in lifecycle["expr"]
    assert {"HomeserverFederationDestinationFailing", "HomeserverHttp5xxRateHigh"} <= set(alerts)
