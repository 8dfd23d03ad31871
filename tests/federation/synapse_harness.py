"""A real Synapse (the ``matrix-synapse`` test dependency) on loopback, for interop tests.

:class:`SynapseServer` owns a working directory (config, signing key, self-signed certificate,
SQLite database, media store, log) and two ports, fixed for its whole life so that a stop and a
later :meth:`~SynapseServer.start` bring back the same server on the same data:

* ``fed_port`` — the HTTPS federation (+ key server) listener; the server name is
  ``localhost:<fed_port>``, so no ``.well-known`` or SRV discovery is involved;
* ``client_port`` — a plain-HTTP client listener (with the admin API), for the tests' clients.

The config carries what Synapse needs to federate on loopback with a self-signed peer
(``federation_verify_certificates: false``, loopback whitelisted, no trusted key servers), rate
limits lifted, and short federation retry intervals so a peer that was down is retried within
seconds, not minutes. A Synapse that fails to start raises with the tail of its log.

Every Synapse test module uses :func:`running_synapse` for its fixture and wraps each scenario in
:func:`diagnostics`, which puts both servers' logs into a failure's message.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from signedjson.key import generate_signing_key, write_signing_keys

from tests.federation.cs_client import register_with_shared_secret
from tests.federation.interop_peer import OurServer
from tests.federation.processes import stop_process_group
from tests.federation.tls_helpers import self_signed_cert
from tests.real_clients.server_process import REPO_ROOT, free_port

SYNAPSE_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
REGISTRATION_SECRET = "interop-synapse-shared-secret"
#: Synapse's start-up (schema creation on a fresh SQLite database) takes seconds on this machine;
#: two busy cores shared with other test runs can stretch it a lot.
#: (Measured here: ~1.5-2.5 s for a first start, ~1.2 s for a restart, so one Synapse per test.)
START_TIMEOUT = 180.0

_UNLIMITED = {"per_second": 10000, "burst_count": 10000}


def synapse_config(workdir: Path, fed_port: int, client_port: int) -> dict[str, Any]:
    """The homeserver.yaml of a loopback interop Synapse."""
    cert_path, key_path = workdir / "tls" / "localhost.crt", workdir / "tls" / "localhost.key"
    return {
        "server_name": f"localhost:{fed_port}",
        "pid_file": str(workdir / "homeserver.pid"),
        "public_baseurl": f"http://127.0.0.1:{client_port}/",
        "listeners": [
            {
                "port": fed_port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": True,
                "x_forwarded": False,
                "resources": [{"names": ["federation"], "compress": False}],
            },
            {
                "port": client_port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            },
        ],
        "tls_certificate_path": str(cert_path),
        "tls_private_key_path": str(key_path),
        "database": {
            "name": "sqlite3",
            "args": {"database": str(workdir / "homeserver.db")},
        },
        "media_store_path": str(workdir / "media_store"),
        "signing_key_path": str(workdir / "signing.key"),
        "log_config": str(workdir / "log_config.yaml"),
        "report_stats": False,
        "enable_metrics": False,
        "enable_registration": False,
        "registration_shared_secret": REGISTRATION_SECRET,
        "macaroon_secret_key": "interop-macaroon-secret",
        "form_secret": "interop-form-secret",
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_verify_certificates": False,
        "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
        "presence": {"enabled": False},
        "use_frozen_dicts": False,
        "url_preview_enabled": False,
        "federation": {
            # How long Synapse waits before retrying a destination that failed, and the cap
            # of its exponential back-off (defaults: 10 minutes and 7 days).
            "destination_min_retry_interval": "1s",
            "destination_retry_multiplier": 2,
            "destination_max_retry_interval": "5s",
            # Per-request retries of the federation HTTP client.
            "client_timeout": "30s",
            "max_short_retry_delay": "1s",
            "max_long_retry_delay": "3s",
            "max_short_retries": 2,
            "max_long_retries": 3,
        },
        "rc_message": _UNLIMITED,
        "rc_registration": _UNLIMITED,
        "rc_room_creation": _UNLIMITED,
        "rc_login": {
            "address": _UNLIMITED,
            "account": _UNLIMITED,
            "failed_attempts": _UNLIMITED,
        },
        "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
        "rc_joins_per_room": _UNLIMITED,
        "rc_invites": {
            "per_room": _UNLIMITED,
            "per_user": _UNLIMITED,
            "per_issuer": _UNLIMITED,
        },
        "rc_federation": {
            "window_size": 1000,
            "sleep_limit": 10000,
            "sleep_delay": 1,
            "reject_limit": 10000,
            "concurrent": 100,
        },
        "rc_key_requests": _UNLIMITED,
        "rc_admin_redaction": _UNLIMITED,
        "rc_presence": {"per_user": _UNLIMITED},
    }


def _log_config(log_path: Path) -> dict[str, Any]:
    return {
        "version": 1,
        "formatters": {
            "precise": {
                "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - "
                "%(request)s - %(message)s"
            }
        },
        "filters": {"context": {"()": "synapse.logging.context.LoggingContextFilter"}},
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "precise",
                "filename": str(log_path),
                "filters": ["context"],
                "encoding": "utf8",
            }
        },
        "loggers": {
            "synapse.storage.SQL": {"level": "WARNING"},
            # A fresh database runs dozens of these at start-up; they bury what matters.
            "synapse.storage.background_updates": {"level": "WARNING"},
            "twisted": {"level": "WARNING"},
        },
        "root": {"level": "INFO", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }


class SynapseServer:
    """One Synapse homeserver on loopback; :meth:`start` / :meth:`stop` any number of times."""

    def __init__(self, workdir: Path, overrides: dict[str, Any] | None = None) -> None:
        self.workdir = workdir
        #: top-level keys of homeserver.yaml replaced for this server (e.g. presence on).
        self.overrides = dict(overrides or {})
        self.fed_port = free_port()
        self.client_port = free_port()
        self.server_name = f"localhost:{self.fed_port}"
        self.client_url = f"http://127.0.0.1:{self.client_port}"
        self.federation_url = f"https://127.0.0.1:{self.fed_port}"
        self.log_path = workdir / "homeserver.log"
        self.stdout_path = workdir / "stdout.log"
        self.config_path = workdir / "homeserver.yaml"
        self.registration_secret = REGISTRATION_SECRET
        self.process: subprocess.Popen[bytes] | None = None
        #: Seconds each start took until the client API answered.
        self.start_durations: list[float] = []
        self._write_files()

    def _write_files(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self_signed_cert(self.workdir / "tls")
        key = generate_signing_key("a_interop")
        with (self.workdir / "signing.key").open("w") as f:
            write_signing_keys(f, [key])
        (self.workdir / "log_config.yaml").write_text(yaml.safe_dump(_log_config(self.log_path)))
        config = synapse_config(self.workdir, self.fed_port, self.client_port)
        config.update(self.overrides)
        self.config_path.write_text(yaml.safe_dump(config))

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> float:
        """Start Synapse and wait until its client API answers; the seconds it took."""
        assert not self.running, "Synapse is already running"
        began = time.monotonic()
        with self.stdout_path.open("ab") as out:
            # A session of its own, so stop() can signal the whole process group.
            self.process = subprocess.Popen(
                [str(SYNAPSE_PYTHON), "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
                cwd=self.workdir,
                env=_synapse_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(began + timeout)
        except BaseException:
            self.stop()
            raise
        took = time.monotonic() - began
        self.start_durations.append(took)
        return took

    def _wait_ready(self, deadline: float) -> None:
        url = self.client_url + "/_matrix/client/versions"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"Synapse exited during start-up (code {self.process.returncode})\n"
                    + self.log_tail()
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"Synapse did not answer {url} in time\n" + self.log_tail())

    def stop(self) -> None:
        """SIGTERM to Synapse's process group; SIGKILL if it is not gone within 20 s."""
        process, self.process = self.process, None
        stop_process_group(process, grace=20)

    async def register(self, session: aiohttp.ClientSession, localpart: str) -> tuple[str, str]:
        """A new user through the shared-secret admin API; ``(user_id, access_token)``."""
        return await register_with_shared_secret(
            session, self.client_url, self.registration_secret, localpart
        )

    def log_tail(self, chars: int = 6000) -> str:
        parts = []
        for path in (self.stdout_path, self.log_path):
            if path.exists():
                text = path.read_text(errors="replace")
                parts.append(f"--- {path.name} ---\n{text[-chars:]}")
        return "\n".join(parts)

    def errors_in_log(self) -> list[str]:
        """Lines of Synapse's log at ERROR or above (for diagnostics in assertion messages)."""
        if not self.log_path.exists():
            return []
        return [
            line
            for line in self.log_path.read_text(errors="replace").splitlines()
            if " - ERROR - " in line or " - CRITICAL - " in line
        ]


@contextmanager
def running_synapse(
    workdir: Path, overrides: dict[str, Any] | None = None
) -> Iterator[SynapseServer]:
    """A Synapse started in ``workdir`` and stopped when the block ends (for fixtures)."""
    server = SynapseServer(workdir, overrides)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def diagnostics(ours: OurServer, synapse: SynapseServer) -> AsyncIterator[None]:
    """On failure, re-raise with both servers' logs (Synapse's errors first: its log is long);
    on success, our log must hold no traceback."""
    try:
        yield
    except BaseException as e:
        if isinstance(e, asyncio.CancelledError | KeyboardInterrupt):
            raise
        errors = "\n".join(synapse.errors_in_log()[-30:])
        raise AssertionError(
            f"{type(e).__name__}: {e}\n\n{ours.log_tail(8000)}\n\n--- Synapse errors ---\n"
            f"{errors}\n\n{synapse.log_tail(6000)}"
        ) from e
    assert "Traceback" not in ours.log(), ours.log_tail(12000)


def _synapse_env() -> dict[str, str]:
    env = dict(os.environ)
    # Synapse must not pick up our checkout's packages or a test runner's settings.
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def main() -> None:  # pragma: no cover - a manual check: python -m tests.federation.synapse_harness
    import tempfile

    with tempfile.TemporaryDirectory(prefix="synapse-interop-") as tmp:
        synapse = SynapseServer(Path(tmp))
        try:
            took = synapse.start()
            print(f"Synapse {synapse.server_name} ready in {took:.1f}s", file=sys.stderr)
            synapse.stop()
            took = synapse.start()
            print(f"restart ready in {took:.1f}s", file=sys.stderr)
        finally:
            synapse.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
