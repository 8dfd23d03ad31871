"""Starting and serving the homeserver (DESIGN §1).

config → signing key → database → ``Homeserver`` (every service: homeserver/homeserver.py) → one
aiohttp application per listener, bound only to the listener's configured addresses. Nothing
else builds these objects; the HTTP handlers find them through the typed keys in
homeserver.http.appkeys.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import os
import signal
import sqlite3
import ssl
from collections.abc import Callable, Iterable, Mapping

import asyncpg
from aiohttp import web
from nacl.signing import SigningKey

from homeserver.clock import WallClock, time_ms
from homeserver.config import ConfigError, HomeserverConfig, ListenerConfig, LoggingConfig
from homeserver.config.database import DatabaseConfig
from homeserver.config.listeners import RESOURCE_NAMES
from homeserver.crypto.key_storage import load_or_create_signing_key
from homeserver.crypto.passwords import configure_hashing
from homeserver.crypto.signing import key_id
from homeserver.homeserver import Homeserver
from homeserver.http import appkeys
from homeserver.http.appkeys import CLOCK, CONFIG, SIGNING_KEY
from homeserver.http.client_address import TRUST_X_FORWARDED
from homeserver.http.factory import new_listener_app
from homeserver.http.guarded_server import ConnectionLimits, GuardedAppRunner
from homeserver.logging import LogConfigError, LoggingSetup, register_secret
from homeserver.storage import Store
from homeserver.storage.database import DatabaseSettings
from homeserver.storage.factory import open_database
from homeserver.storage.postgres_locale import check_postgres_locale
from homeserver.storage.process_lock import DatabaseInUse

logger = logging.getLogger(__name__)

#: How long in-flight requests may take to finish after SIGTERM before they are cut off.
SHUTDOWN_GRACE_SECONDS = 10.0
#: The collector's generation thresholds (Python's default: 700, 10, 10); see ``run``.
GC_THRESHOLDS = (50_000, 20, 100)


class StartupError(Exception):
    """The server cannot start for a reason outside the config (a port in use …). The message
    is one line for the operator."""


def configure_logging(config: LoggingConfig) -> LoggingSetup:
    """Apply ``log_config`` (a dictConfig YAML, as Synapse's) or log INFO to stderr as JSON
    lines; either way with secrets redacted. The result's ``reload()`` re-applies it (SIGHUP)."""
    setup = LoggingSetup(config.log_config)
    try:
        setup.apply()
    except LogConfigError as e:
        raise ConfigError("log_config", f"cannot apply {config.log_config}: {e}") from None
    return setup


def _redact_key_material(signing_key: SigningKey) -> None:
    """Have the log filter scrub this server's seed in every encoding it might be printed in."""
    seed = bytes(signing_key)
    for text in (base64.b64encode(seed).decode(), base64.urlsafe_b64encode(seed).decode()):
        register_secret(text)
        register_secret(text.rstrip("="))


def database_settings(config: DatabaseConfig, *, exclusive: bool = False) -> DatabaseSettings:
    """``exclusive``: the server's own (a second server on one SQLite database is refused)."""
    if config.engine == "sqlite":
        return DatabaseSettings(engine="sqlite", path=str(config.sqlite_path), exclusive=exclusive)
    return DatabaseSettings(
        engine="postgres", dsn=config.postgres_dsn, cp_min=config.cp_min, cp_max=config.cp_max
    )


async def start_homeserver(
    config: HomeserverConfig,
    *,
    environ: Mapping[str, str] | None = None,
    clock: WallClock = time_ms,
) -> Homeserver:
    """Load (or on first start create) the signing key, open and migrate the database, and
    assemble the shared objects. Raises KeyStorageError if the key cannot be used and
    StartupError if the database cannot be opened."""
    signing_key, _created = load_or_create_signing_key(
        config.keys.signing_key_path,
        config.keys.secrets_key_path,
        os.environ if environ is None else environ,
    )
    _redact_key_material(signing_key)
    try:
        db = await open_database(database_settings(config.database, exclusive=True))
    except DatabaseInUse as e:
        raise StartupError(str(e)) from None
    except (OSError, asyncpg.PostgresError, sqlite3.Error) as e:
        raise StartupError(f"cannot open the {config.database.name} database: {e}") from None
    if config.database.engine != "sqlite":
        problems = await check_postgres_locale(db)
        if problems and not config.database.allow_unsafe_locale:
            await db.close()
            raise StartupError(
                f"the PostgreSQL database cannot be used: {'; '.join(problems)}. Create it with"
                " `createdb --encoding=UTF8 --locale=C --template=template0`, or set"
                " database.allow_unsafe_locale: true to run anyway"
            )
        for problem in problems:
            logger.warning("PostgreSQL database: %s (allowed by allow_unsafe_locale)", problem)
    if config.redis.enabled and db.engine == "sqlite":
        logger.warning(
            "redis.enabled is ignored with SQLite: SQLite serves one process, which needs no"
            " Redis (use PostgreSQL to run several)"
        )
    hs = Homeserver(config, signing_key, Store(db), clock=clock)
    # An upgrade interrupted by a crash committed nothing: its room is active again (this
    # process's previous run's, or any other process's that is not running; never a live
    # process's upgrade).
    await hs.room_upgrades.recover_stranded_upgrades(hs.leases.instance_alive)
    # The users and rooms that existed before the directory did (once, after its migration).
    await hs.store.user_directory.rebuild_if_needed()
    # Shadow bans and rate-limit overrides are read from memory on every request.
    await hs.user_overrides.reload()
    return hs


def create_app(
    hs: Homeserver, resources: Iterable[str] | None = None, *, x_forwarded: bool = False
) -> web.Application:
    """The aiohttp application serving ``resources`` (default: every resource; tests use that)
    for ``hs``; ``x_forwarded``: the listener's, whether to trust X-Forwarded-For."""
    app = new_listener_app(RESOURCE_NAMES if resources is None else resources)
    app[TRUST_X_FORWARDED] = x_forwarded
    app[CONFIG] = hs.config
    app[SIGNING_KEY] = hs.signing_key
    app[CLOCK] = hs.clock
    app[appkeys.ACCOUNTS] = hs.accounts
    app[appkeys.ACCOUNT_DATA] = hs.account_data
    app[appkeys.ADMIN_DESTINATIONS] = hs.admin_destinations
    app[appkeys.ADMIN_LIFECYCLE] = hs.admin_lifecycle
    app[appkeys.ADMIN_MEDIA] = hs.admin_media
    app[appkeys.ADMIN_ROOMS] = hs.admin_rooms
    app[appkeys.ADMIN_ROOM_OPS] = hs.admin_room_ops
    app[appkeys.ADMIN_USERS] = hs.admin_users
    app[appkeys.ADMIN_USER_DETAILS] = hs.admin_user_details
    app[appkeys.USER_REDACTIONS] = hs.user_redactions
    app[appkeys.REGISTRATION_TOKENS] = hs.accounts.registration_tokens
    app[appkeys.ALIASES] = hs.aliases
    app[appkeys.E2E_KEYS] = hs.e2e_keys
    app[appkeys.FEDERATION_EVENTS] = hs.federation_events
    app[appkeys.FEDERATION_QUERIES] = hs.federation_queries
    app[appkeys.FEDERATION_SENDER] = hs.federation_sender
    app[appkeys.FEDERATION_TRANSACTIONS] = hs.federation_transactions
    app[appkeys.FILTERS] = hs.filters
    app[appkeys.HIERARCHY] = hs.hierarchy
    app[appkeys.HISTORY_PURGE] = hs.history_purge
    app[appkeys.INBOUND_INVITES] = hs.inbound_invites
    app[appkeys.KEY_BACKUP] = hs.key_backup
    app[appkeys.KEYRING] = hs.keyring
    app[appkeys.MEDIA] = hs.media
    app[appkeys.MEMBERSHIP] = hs.membership
    app[appkeys.METRICS] = hs.metrics
    app[appkeys.NOTIFICATIONS] = hs.notifications
    app[appkeys.PRESENCE] = hs.presence
    app[appkeys.PROFILES] = hs.profiles
    app[appkeys.PUSH_RULES] = hs.push_rules
    app[appkeys.PUSHERS] = hs.pushers
    app[appkeys.RATELIMITERS] = hs.ratelimiters
    app[appkeys.RECEIPTS] = hs.receipts
    app[appkeys.REPORTS] = hs.reports
    app[appkeys.RESIDENT_MEMBERSHIP] = hs.resident_membership
    app[appkeys.ROOM_CREATION] = hs.room_creation
    app[appkeys.ROOM_DELETION] = hs.room_deletion
    app[appkeys.ROOM_DIRECTORY] = hs.room_directory
    app[appkeys.ROOM_EVENTS] = hs.room_events
    app[appkeys.ROOM_SUMMARY] = hs.room_summary
    app[appkeys.ROOM_SEARCH] = hs.room_search
    app[appkeys.ROOM_UPGRADES] = hs.room_upgrades
    app[appkeys.SCHEDULED_TASKS] = hs.scheduled_tasks
    app[appkeys.SERVER_NOTICES] = hs.server_notices
    app[appkeys.SYNC] = hs.sync
    app[appkeys.TIMESTAMP_LOOKUP] = hs.timestamp_lookup
    app[appkeys.TO_DEVICE] = hs.to_device
    app[appkeys.TYPING] = hs.typing
    app[appkeys.UPGRADE_PREVIEW] = hs.upgrade_preview
    app[appkeys.USER_DIRECTORY] = hs.user_directory
    return app


def listener_limits(listener: ListenerConfig) -> ConnectionLimits:
    return ConnectionLimits(
        header_timeout=listener.request_header_timeout,
        body_timeout=listener.request_body_timeout,
        max_connections=listener.max_connections,
    )


def _ssl_context(config: HomeserverConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate, private_key = config.tls.certificate_path, config.tls.private_key_path
    assert certificate is not None and private_key is not None  # checked when parsing
    try:
        context.load_cert_chain(certificate, private_key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError("tls_certificate_path", f"cannot load the certificate: {e}") from None
    return context


async def _start_listener(
    hs: Homeserver, listener: ListenerConfig, runners: list[web.AppRunner]
) -> None:
    # access_log=None: aiohttp's access log prints query strings, which may carry access tokens.
    runner = GuardedAppRunner(
        create_app(hs, listener.served_resources, x_forwarded=listener.x_forwarded),
        listener_limits(listener),
        access_log=None,
        shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
    )
    await runner.setup()
    runners.append(runner)
    ssl_context = _ssl_context(hs.config) if listener.tls else None
    scheme = "https" if listener.tls else "http"
    for address in listener.bind_addresses:
        site = web.TCPSite(runner, address, listener.port, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as e:
            raise StartupError(
                f"cannot listen on {address}:{listener.port}: {e.strerror or e}"
            ) from None
        host = f"[{address}]" if ":" in address else address
        logger.info(
            "listening on %s://%s:%d for %s",
            scheme,
            host,
            listener.port,
            ", ".join(sorted(listener.served_resources)),
        )


async def serve(
    hs: Homeserver, stop: asyncio.Event | None = None, logging_setup: LoggingSetup | None = None
) -> None:
    """Serve every listener until ``stop`` is set, then let in-flight requests finish and close.

    Without ``stop`` (the real server), SIGTERM and SIGINT stop it and SIGHUP reloads
    ``log_config`` (``logging_setup``); a caller that passes its own event (a test harness)
    keeps its process's signal handling.
    """
    loop = asyncio.get_running_loop()
    handle_signals = stop is None
    stop = stop or asyncio.Event()
    if handle_signals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        reload_logging = (logging_setup or LoggingSetup(hs.config.logging.log_config)).reload
        loop.add_signal_handler(signal.SIGHUP, reload_logging)
    runners: list[web.AppRunner] = []
    try:
        if hs.redis_bus is not None:
            hs.redis_bus.start()  # connects in the background; serving does not wait for it
        for listener in hs.config.listeners:
            await _start_listener(hs, listener, runners)
        # This process joins the live list; from now on it renews the leases of the work it
        # alone does (with several processes over one database, each piece runs once).
        await hs.leases.start()
        # Catch up on what was queued before a restart, and deliver from now on: the
        # destinations this process owns, each under its lease.
        await hs.federation_sender.start()
        # Room deletions left unfinished (their status is in the database), each under its
        # lease; looked for again at every lease round (a process that stopped).
        await hs.room_deletion.resume()
        hs.leases.on_tick(hs.room_deletion.resume)
        await hs.history_purge.resume()
        # Upgrade locks whose lease ran out or whose process is gone (one process sweeps).
        await hs.upgrade_recovery_job.enable()
        # Redactions of a user's events a previous run left unfinished are failed.
        await hs.user_redactions.recover()
        # Our users following other servers' upgrades: what a previous run left queued (rows
        # claimed under compare-and-set: every process may work the queue).
        await hs.upgrade_follower.start()
        # Idle and vanished users go unavailable and offline.
        hs.presence.start()
        # Notifications: push rules for what committed since the last run, then pushers'
        # queues, on the one process holding the "push" lease.
        await hs.push_job.enable()
        # Client addresses written in batches and swept; shadow bans and rate-limit overrides
        # set by another process picked up.
        hs.accounts.client_ips.start()
        hs.user_overrides.start()
        logger.info(
            "homeserver %s started (signing key %s)",
            hs.config.server_name,
            key_id(hs.signing_key),
        )
        await stop.wait()
        logger.info("shutting down")
    finally:
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
        for runner in reversed(runners):
            await runner.cleanup()
        await hs.room_deletion.stop()
        await hs.history_purge.stop()
        await hs.user_redactions.stop()
        await hs.upgrade_follower.stop()
        await hs.push_job.disable()
        await hs.upgrade_recovery_job.disable()
        await hs.accounts.client_ips.stop()  # after the runners: the last uses written
        await hs.user_overrides.stop()
        # After the runners: in-flight handlers may still have been making outbound requests.
        await hs.federation_sender.stop()
        # Last: give every lease up and leave the live list, so the others take over at once.
        await hs.leases.stop()
        await hs.e2e_edus.stop()  # background resyncs of remote users' device lists
        await hs.presence.stop()
        await hs.typing.stop()
        if hs.redis_bus is not None:
            await hs.redis_bus.stop()
        await hs.federation_client.close()
    logger.info("stopped")


def run(config: HomeserverConfig) -> None:
    """Start the server from a loaded config and block until it is told to stop.

    Raises ConfigError, KeyStorageError or StartupError for the CLI to report.
    """
    logging_setup = configure_logging(config.logging)
    for warning in config.warnings:
        logger.warning("%s", warning)
    # Process-wide (the hasher is module state): set here, where one process runs one server,
    # not in start_homeserver, which tests call for many servers in one process.
    hashing = config.registration.password_hashing
    configure_hashing(
        time_cost=hashing.time_cost,
        memory_cost=hashing.memory_cost,
        parallelism=hashing.parallelism,
    )
    # Process-wide too. Python's default collects the youngest generation every 700 net
    # allocations, and a big room's upgrade or sync allocates millions of objects that live
    # until the request ends: most collections then scan them for nothing (a 10,000-member
    # upgrade spent about a sixth of its CPU in them). Rarer collections cost a little memory.
    gc.set_threshold(*GC_THRESHOLDS)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_run(config, logging_setup))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (it roughly halves the event loop's share of each request);
    the standard loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _run(config: HomeserverConfig, logging_setup: LoggingSetup) -> None:
    hs = await start_homeserver(config)
    # What startup made (modules, config, caches' skeletons) lives as long as the process:
    # out of the collector's sight, so full collections no longer walk it.
    gc.freeze()
    try:
        await serve(hs, logging_setup=logging_setup)
    finally:
        await hs.store.db.close()
