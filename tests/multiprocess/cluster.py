"""Several real ``homeserver run`` processes of ONE homeserver on one PostgreSQL schema and one
Redis of their own, as an operator runs them (issue 17).

Every process reads the shared ``homeserver.yaml`` (generated like every real-process test's,
see tests/real_clients/server_process.py) and then a small file of its own with its
``instance_name`` and ``listeners``, through two ``--config-path`` options (later files override
earlier keys). Each process has

* a plain-HTTP client listener (client API, admin API, ``/_synapse/metrics``, ``/health``),
  reached directly: tests choose which process a request goes to (:class:`RoundRobin` spreads
  them, a nio user can be pinned to one);
* a TLS federation listener behind a round-robin TCP balancer (:mod:`tests.multiprocess.balancer`)
  whose port is the one in the server name ``localhost:<port>``, so another server sees one
  homeserver whichever process answers.

The database is a schema of its own in the test PostgreSQL database (created here, dropped by
:meth:`Cluster.destroy`), named through the DSN's ``search_path``. Redis is a ``redis-server``
of the cluster's own (:class:`~tests.multiprocess.redis_process.RedisProcess`), so a test may stop
and restart it. A process can be stopped (SIGTERM), killed (SIGKILL, with whatever it spawned)
and started again on the same ports.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.federation.processes import stop_process_group
from tests.federation.tls_helpers import self_signed_cert
from tests.http_client import CS, Client
from tests.multiprocess.balancer import TcpBalancer
from tests.multiprocess.redis_process import RedisProcess
from tests.real_clients.server_process import free_port, generate_config, server_env

POSTGRES_DSN = os.environ.get(
    "HOMESERVER_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
SKIP_POSTGRES = os.environ.get("HOMESERVER_TEST_SKIP_POSTGRES") == "1"

RELAXED = {"per_second": 100000, "burst_count": 100000}
#: ``rc_room_creation`` as Synapse's default burst (10 rooms), refilled so slowly that a test's
#: window never refills it: the 11th createRoom of a user is refused.
ROOM_CREATION_LIMIT = {"per_second": 0.001, "burst_count": 10}
#: How long a process's leases (federation destinations, background jobs) last without renewal
#: (``worker_leases.lease_timeout``). Short, so a killed process's destinations are taken over
#: within seconds.
LEASE_SECONDS = 5


def shared_overrides(workdir: Path, redis_port: int, dsn: str) -> dict[str, Any]:
    """The keys of the shared homeserver.yaml every process reads first."""
    cert_path, key_path = self_signed_cert(workdir / "tls")
    return {
        "database": {"name": "psycopg2", "args": {"dsn": dsn, "cp_min": 2, "cp_max": 8}},
        "redis": {"enabled": True, "host": "127.0.0.1", "port": redis_port, "dbid": 0},
        "worker_leases": {"lease_timeout": f"{LEASE_SECONDS}s", "poll_interval": "250ms"},
        "tls_certificate_path": str(cert_path),
        "tls_private_key_path": str(key_path),
        "federation_verify_certificates": False,
        "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
        "federation": {
            "destination_min_retry_interval": "1s",
            "destination_retry_multiplier": 2,
            "destination_max_retry_interval": "3s",
        },
        "enable_metrics": True,
        "enable_registration": True,
        "enable_registration_without_verification": True,
        # private chats encrypted, public rooms not
        "encryption_enabled_by_default_for_room_type": "invite",
        "rc_room_creation": ROOM_CREATION_LIMIT,
        "rc_message": RELAXED,
        "rc_registration": RELAXED,
        "rc_login": RELAXED,
        "rc_joins": {"local": RELAXED, "remote": RELAXED},
        "rc_invites": RELAXED,
        "rc_to_device": RELAXED,
        "rc_typing": RELAXED,
    }


def instance_config(name: str, client_port: int, fed_port: int) -> dict[str, Any]:
    """The small file of one process: its name and its listeners."""
    return {
        "instance_name": name,
        "listeners": [
            {
                "port": client_port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "resources": [{"names": ["client", "metrics"]}],
            },
            {
                "port": fed_port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": True,
                "resources": [{"names": ["federation"]}],
            },
        ],
    }


@dataclass
class Instance:
    """One process of the cluster."""

    index: int
    name: str
    client_port: int
    fed_port: int
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Cluster:
    """``size`` processes of one homeserver; :meth:`create` then :meth:`start_all`."""

    def __init__(
        self,
        workdir: Path,
        size: int = 3,
        extra: Mapping[str, Any] | None = None,
        postgres_dsn: str = POSTGRES_DSN,
    ):
        self.workdir = workdir
        self.size = size
        self.extra = dict(extra or {})
        self.postgres_dsn = postgres_dsn
        #: The schema, also the ``application_name`` of every connection the processes open
        #: (their backends in ``pg_stat_activity``).
        self.schema = f"multi_{uuid.uuid4().hex[:16]}"
        self.redis = RedisProcess(workdir / "redis")
        self.instances: list[Instance] = []
        self.federation: TcpBalancer | None = None
        self.shared_config = workdir / "homeserver.yaml"
        self.registration_secret = ""
        self.server_name = ""

    # --- life -----------------------------------------------------------------------------------
    async def create(self) -> None:
        """Schema, Redis, config files and the federation balancer (no process started yet)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        admin = await asyncpg.connect(self.postgres_dsn, timeout=10)
        try:
            await admin.execute(f'CREATE SCHEMA "{self.schema}"')
        finally:
            await admin.close()
        self.redis.start()
        ports = [(free_port(), free_port()) for _ in range(self.size)]
        self.federation = TcpBalancer([fed for _, fed in ports])
        self.server_name = f"localhost:{self.federation.port}"
        separator = "&" if "?" in self.postgres_dsn else "?"
        dsn = (
            f"{self.postgres_dsn}{separator}search_path={self.schema}"
            f"&application_name={self.schema}"
        )
        overrides = shared_overrides(self.workdir, self.redis.port, dsn)
        overrides.update(self.extra)
        generate_config(self.workdir, self.server_name, ports[0][0], overrides)
        config = yaml.safe_load(self.shared_config.read_text())
        self.registration_secret = str(config["registration_shared_secret"])
        for index, (client_port, fed_port) in enumerate(ports):
            name = f"proc{index}"
            path = self.workdir / f"{name}.yaml"
            path.write_text(yaml.safe_dump(instance_config(name, client_port, fed_port)))
            self.instances.append(
                Instance(index, name, client_port, fed_port, path, self.workdir / f"{name}.log")
            )
        self.federation.start()

    def start(self, index: int) -> None:
        instance = self.instances[index]
        assert not instance.running, f"{instance.name} is already running"
        command = [sys.executable, "-m", "homeserver", "run"]
        for path in (self.shared_config, instance.config_path):
            command += ["--config-path", str(path)]
        with instance.log_path.open("ab") as log:
            instance.process = subprocess.Popen(
                command,
                env=server_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_healthy(self, index: int, timeout: float = 90) -> None:
        instance = self.instances[index]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not instance.running:
                raise AssertionError(f"{instance.name} exited at start-up\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(instance.client_url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{instance.name} did not answer /health in time\n{self.log_tail()}")

    def start_all(self) -> None:
        # All at once: the first to take the migration lock migrates the fresh schema, the
        # others wait for it and find nothing left to do.
        for index in range(self.size):
            self.start(index)
        for index in range(self.size):
            self.wait_healthy(index)

    def kill(self, index: int) -> None:
        """SIGKILL the process and everything it spawned: a crash, nothing flushed."""
        instance = self.instances[index]
        if instance.process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(instance.process.pid, signal.SIGKILL)
        instance.process.wait(timeout=10)
        instance.process = None

    def stop(self, index: int) -> None:
        """SIGTERM (a clean shutdown), SIGKILL after 30 s."""
        instance = self.instances[index]
        process, instance.process = instance.process, None
        stop_process_group(process, grace=30)

    async def destroy(self) -> None:
        for index in range(len(self.instances)):
            self.stop(index)
        if self.federation is not None:
            self.federation.stop()
        self.redis.stop()
        admin = await asyncpg.connect(self.postgres_dsn, timeout=10)
        try:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await admin.close()

    # --- looking in -------------------------------------------------------------------------------
    @property
    def urls(self) -> list[str]:
        return [instance.client_url for instance in self.instances]

    def log_tail(self, chars: int = 4000) -> str:
        parts = [f"--- {i.name}.log ---\n{i.log()[-chars:]}" for i in self.instances]
        return "\n".join(parts)

    def tracebacks(self) -> list[str]:
        """Each log line holding a traceback, with the process's name."""
        return [
            f"{i.name}: {line}"
            for i in self.instances
            for line in i.log().splitlines()
            if "Traceback" in line
        ]

    async def metrics(self, index: int) -> dict[str, list[tuple[dict[str, str], float]]]:
        """Process ``index``'s ``/_synapse/metrics``: sample name → [(labels, value)]."""
        url = self.instances[index].client_url + "/_synapse/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200, await response.text()
            text = await response.text()
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return samples

    async def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """A read of the cluster's schema, for checks of what was committed."""
        conn = await asyncpg.connect(self.postgres_dsn, timeout=10)
        try:
            await conn.execute(f'SET search_path TO "{self.schema}"')
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()


@contextmanager
def running_cluster(workdir: Path, size: int = 3, **extra: Any) -> Iterator[Cluster]:
    """A started cluster for a module's fixture; destroyed at the end. PostgreSQL only (SQLite
    refuses a second process), so skipped like every PostgreSQL test when PostgreSQL is."""
    if SKIP_POSTGRES:
        pytest.skip("!!! PostgreSQL tests SKIPPED: HOMESERVER_TEST_SKIP_POSTGRES=1 !!!")
    cluster = Cluster(workdir, size, extra)
    try:
        asyncio.run(cluster.create())
        cluster.start_all()
        yield cluster
    finally:
        asyncio.run(cluster.destroy())


class ProcessUnavailable(AssertionError):
    """Every process refused the connection."""


class RoundRobin:
    """A bare client-server client whose every request goes to the next process in turn, as
    behind a round-robin balancer. A process that refuses connections is marked down and
    skipped (the balancer's health check) until :meth:`mark_up`."""

    def __init__(self, session: aiohttp.ClientSession, urls: list[str]) -> None:
        self.session = session
        self.urls = list(urls)
        self.down: set[int] = set()
        self._turn = itertools.count()
        #: process index → requests answered
        self.answered: dict[int, int] = dict.fromkeys(range(len(urls)), 0)

    def next_index(self) -> int:
        for _ in range(len(self.urls)):
            index = next(self._turn) % len(self.urls)
            if index not in self.down:
                return index
        raise ProcessUnavailable("every process is down")

    def mark_up(self, index: int) -> None:
        self.down.discard(index)

    def on(self, index: int) -> Client:
        return Client(self.session, self.urls[index])

    async def call_on(
        self,
        index: int,
        method: str,
        path: str,
        token: str | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        try:
            answer = await self.on(index).call(method, path, token, json=json, timeout=timeout)
        except aiohttp.ClientConnectorError:
            self.down.add(index)
            raise
        self.answered[index] += 1
        return answer

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        """``(status, body)`` from the next live process. A refused connection (the process is
        down) moves on to the next; anything after the request left is the caller's."""
        while True:
            index = self.next_index()
            with suppress(aiohttp.ClientConnectorError):
                return await self.call_on(index, method, path, token, json, timeout)

    async def ok(self, method: str, path: str, token: str | None = None, json: Any = None) -> Any:
        status, body = await self.call(method, path, token, json)
        assert status == 200, (method, path, status, body)
        return body

    async def register(self, localpart: str) -> tuple[str, str]:
        """A user through the dummy UIA stage, the two steps on two different processes (the
        UIA session is in the database); ``(user_id, access_token)``."""
        body: dict[str, Any] = {"username": localpart, "password": f"{localpart}-pw-0123456789"}
        status, answer = await self.call("POST", f"{CS}/register", json=body)
        if status == 401:
            body["auth"] = {"type": "m.login.dummy", "session": answer["session"]}
            status, answer = await self.call("POST", f"{CS}/register", json=body)
        assert status == 200, answer
        return str(answer["user_id"]), str(answer["access_token"])
