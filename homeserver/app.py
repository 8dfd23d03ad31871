"""The one place that wires the homeserver together (DESIGN §1).

config → signing key → (database, services: added here as they are written) → one aiohttp
application per listener, bound only to the listener's configured addresses. Nothing else builds
these objects; the HTTP handlers find them through the typed keys in homeserver.http.appkeys.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
import sqlite3
import ssl
from collections.abc import Callable, Iterable, Mapping

import asyncpg
from aiohttp import web
from nacl.signing import SigningKey

from homeserver.accountdata.receipts import ReceiptsService
from homeserver.accountdata.service import AccountDataService
from homeserver.accounts.profile import ProfileService
from homeserver.accounts.service import Accounts
from homeserver.admin.destinations import AdminDestinations
from homeserver.admin.lifecycle import RoomLifecycleAdmin, UpgradeFailureRecorder
from homeserver.admin.room_deletion import RoomDeletionService
from homeserver.admin.rooms import AdminRooms
from homeserver.admin.upgrade_preview import UpgradePreview
from homeserver.admin.users import AdminUsers
from homeserver.clock import WallClock, time_ms
from homeserver.config import ConfigError, HomeserverConfig, ListenerConfig, LoggingConfig
from homeserver.config.database import DatabaseConfig
from homeserver.config.listeners import RESOURCE_NAMES
from homeserver.crypto.key_storage import load_or_create_signing_key
from homeserver.crypto.signing import key_id
from homeserver.e2e.keys import E2EKeysService
from homeserver.e2e.to_device import ToDeviceService
from homeserver.events.builder import Signer
from homeserver.federation.client import FederationClient
from homeserver.federation.e2e_edus import E2EEdus
from homeserver.federation.invites import InboundInvites
from homeserver.federation.joins import ResidentMembership
from homeserver.federation.keyring import Keyring
from homeserver.federation.queries import FederationQueries
from homeserver.federation.received import ReceivedEvents
from homeserver.federation.remote_device_cache import RemoteDeviceListCache
from homeserver.federation.remote_keys import RemoteKeys
from homeserver.federation.remote_membership import RemoteMembership
from homeserver.federation.remote_upgrades import RemoteUpgrades
from homeserver.federation.sender import FederationSender
from homeserver.federation.serving import FederationEventServer
from homeserver.federation.transactions import TransactionHandler
from homeserver.http.appkeys import CLOCK, CONFIG, HS, SIGNING_KEY
from homeserver.http.client_address import TRUST_X_FORWARDED
from homeserver.http.factory import new_listener_app
from homeserver.http.guarded_server import ConnectionLimits, GuardedAppRunner
from homeserver.logging import LogConfigError, LoggingSetup, register_secret
from homeserver.metrics import HomeserverMetrics, room_metrics_subscriber
from homeserver.modules import load_modules
from homeserver.push.rules import PushRulesService
from homeserver.ratelimit import RateLimiters
from homeserver.rooms.aliases import AliasService
from homeserver.rooms.audit import audit_log_subscriber
from homeserver.rooms.bus import DomainEventBus
from homeserver.rooms.creation import RoomCreationService
from homeserver.rooms.directory import PublicRoomList
from homeserver.rooms.events_service import RoomEventsService
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.sender import EventSender
from homeserver.rooms.upgrade import RoomUpgradeService
from homeserver.storage import Store
from homeserver.storage.database import DatabaseSettings
from homeserver.storage.factory import open_database
from homeserver.storage.postgres_locale import check_postgres_locale
from homeserver.streams.notifier import Notifier
from homeserver.sync.filters import FilterService
from homeserver.sync.sync import SyncService

logger = logging.getLogger(__name__)

#: How long in-flight requests may take to finish after SIGTERM before they are cut off.
SHUTDOWN_GRACE_SECONDS = 10.0


class StartupError(Exception):
    """The server cannot start for a reason outside the config (a port in use …). The message
    is one line for the operator."""


class Homeserver:
    """Everything the request handlers share: config, keys, the store and the services.

    Each service gets its collaborators here, explicitly; handlers reach them through
    ``request.app[HS]``. Add a service with one line below, in dependency order.
    """

    def __init__(
        self,
        config: HomeserverConfig,
        signing_key: SigningKey,
        store: Store,
        clock: WallClock = time_ms,
    ) -> None:
        self.config = config
        self.signing_key = signing_key
        self.store = store
        self.clock = clock
        self.signer = Signer(config.server_name, signing_key)
        self.bus = DomainEventBus()
        self.notifier = Notifier()
        self.ratelimiters = RateLimiters(config.ratelimiting)
        self.sender = EventSender(store, self.signer, clock_ms=clock, notifier=self.notifier)
        # Federation transport: signed requests out, key fetching and signature checks in.
        self.federation_client = FederationClient(
            config.server_name, signing_key, config.federation, clock=clock
        )
        self.keyring = Keyring(
            store.keys,
            self.federation_client,
            clock,
            config.server_name,
            signing_key,
            config.keys.old_signing_keys,
        )
        # --- services (one line each; keep this order: later ones may use earlier ones) ---
        self.profiles = ProfileService(store, self.sender, config.server_name)
        self.accounts = Accounts(store, config, clock, self.ratelimiters, notifier=self.notifier)
        self.metrics = HomeserverMetrics(config.server_name)
        self.metrics.watch_store(store)
        self.bus.subscribe(audit_log_subscriber)
        self.modules = load_modules(config.modules, config.server_name, self.bus)
        self.bus.subscribe(room_metrics_subscriber(self.metrics))
        self.room_creation = RoomCreationService(
            config=config,
            store=store,
            signer=self.signer,
            ratelimiter=self.ratelimiters.room_creation,
            notifier=self.notifier,
            bus=self.bus,
            clock_ms=clock,
            profiles=self.profiles.get_profile,
            invite_limiter=self.ratelimiters.invites,
        )
        self.aliases = AliasService(
            store=store, sender=self.sender, server_name=config.server_name, clock_ms=clock
        )
        self.room_directory = PublicRoomList(store=store)
        self.membership = MembershipService(
            store,
            self.sender,
            self.ratelimiters,
            server_name=config.server_name,
            profiles=self.profiles.get_profile,
        )
        self.room_events = RoomEventsService(
            store, self.sender, self.ratelimiters, clock, membership=self.membership
        )
        self.room_upgrades = RoomUpgradeService(
            config=config,
            store=store,
            signer=self.signer,
            ratelimiter=self.ratelimiters.room_creation,
            notifier=self.notifier,
            bus=self.bus,
            clock_ms=clock,
        )
        # Our admin additions: the lifecycle, the upgrade preview, failed upgrades kept.
        self.bus.subscribe(UpgradeFailureRecorder(store.upgrade_audit, clock))
        self.admin_lifecycle = RoomLifecycleAdmin(store, clock)
        self.upgrade_preview = UpgradePreview(self.room_upgrades)
        self.filters = FilterService(store)
        self.push_rules = PushRulesService(store, self.notifier)
        self.account_data = AccountDataService(store, self.notifier, self.push_rules)
        self.receipts = ReceiptsService(store, self.notifier, clock)
        self.sync = SyncService(store, self.notifier, self.push_rules, clock)
        # Receiving events over federation (/send) and serving them (/state, /backfill …).
        self.received_events = ReceivedEvents(
            store=store,
            keyring=self.keyring,
            client=self.federation_client,
            notifier=self.notifier,
            clock_ms=clock,
        )
        self.federation_transactions = TransactionHandler(
            store, self.received_events, clock, metrics=self.metrics
        )
        self.federation_events = FederationEventServer(store, config.server_name, clock)
        # Outbound delivery of the outbox (started by serve(), after the listeners).
        self.federation_sender = FederationSender(
            store,
            self.federation_client,
            config.federation,
            clock,
            config.server_name,
            self.signer,
            keyring=self.keyring,
            metrics=self.metrics,
        )
        # Joins, leaves, invites and queries across servers, both ways.
        self.resident_membership = ResidentMembership(
            store=store,
            signer=self.signer,
            received=self.received_events,
            notifier=self.notifier,
            wake_sender=self.federation_sender.wake,
            clock_ms=clock,
        )
        self.remote_membership = RemoteMembership(
            store=store,
            signer=self.signer,
            client=self.federation_client,
            received=self.received_events,
            notifier=self.notifier,
            clock_ms=clock,
        )
        self.inbound_invites = InboundInvites(
            store=store,
            signer=self.signer,
            received=self.received_events,
            notifier=self.notifier,
            clock_ms=clock,
            limiter=self.ratelimiters.invites,
        )
        self.federation_queries = FederationQueries(
            store=store,
            aliases=self.aliases,
            client=self.federation_client,
            server_name=config.server_name,
        )
        self.remote_upgrades = RemoteUpgrades(store=store, notifier=self.notifier, clock_ms=clock)
        self.received_events.tombstone_hook = self.remote_upgrades.on_tombstone
        self.remote_membership.on_joined = self.remote_upgrades.on_joined
        self.membership.remote = self.remote_membership
        self.membership.remote_aliases = self.federation_queries.resolve_remote_alias
        self.aliases.remote_resolver = self.federation_queries.resolve_remote_alias
        self.profiles.remote_lookup = self.federation_queries.remote_profile
        # Synapse's admin API (/_synapse/admin): rooms, room deletion, users, destinations.
        self.admin_rooms = AdminRooms(store, config.server_name, clock)
        self.room_deletion = RoomDeletionService(
            store=store,
            membership=self.membership,
            room_creation=self.room_creation,
            sender=self.sender,
            server_name=config.server_name,
            clock=clock,
        )
        self.admin_users = AdminUsers(
            store=store,
            membership=self.membership,
            profiles=self.profiles,
            server_name=config.server_name,
            clock=clock,
            device_removal=self.accounts.device_removal,
        )
        self.admin_destinations = AdminDestinations(store, self.federation_sender)
        # To-device messages, local and across servers.
        self.to_device = ToDeviceService(
            store, self.notifier, config.server_name, clock, limiter=self.ratelimiters.to_device
        )
        # End-to-end keys across servers: outbound queries, inbound EDUs.
        self.remote_keys = RemoteKeys(client=self.federation_client)
        self.e2e_edus = E2EEdus(
            store=store,
            remote_keys=self.remote_keys,
            notifier=self.notifier,
            server_name=config.server_name,
            clock_ms=clock,
        )
        self.federation_transactions.edu_handler = self.e2e_edus.on_edus
        # Remote users' keys from their cached device lists while those are complete.
        self.remote_keys.device_lists = RemoteDeviceListCache(
            store=store, resync=self.e2e_edus.resync_now
        )
        # End-to-end keys of clients: /keys/*; remote users through self.remote_keys.
        self.e2e_keys = E2EKeysService(
            store,
            server_name=config.server_name,
            clock=clock,
            notifier=self.notifier,
            reauth=self.accounts.reauth,
            remote=lambda: self.remote_keys,
        )

    @property
    def server_name(self) -> str:
        return self.config.server_name

    def is_mine(self, identifier: str) -> bool:
        """Whether a user ID / alias / v1-11 room ID names this server."""
        return identifier.split(":", 1)[-1] == self.config.server_name


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


def database_settings(config: DatabaseConfig) -> DatabaseSettings:
    if config.engine == "sqlite":
        return DatabaseSettings(engine="sqlite", path=str(config.sqlite_path))
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
        db = await open_database(database_settings(config.database))
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
    hs = Homeserver(config, signing_key, Store(db), clock=clock)
    # An upgrade interrupted by a crash committed nothing: its room is active again.
    await hs.room_upgrades.recover_stranded_upgrades()
    return hs


def create_app(
    hs: Homeserver, resources: Iterable[str] | None = None, *, x_forwarded: bool = False
) -> web.Application:
    """The aiohttp application serving ``resources`` (default: every resource; tests use that)
    for ``hs``; ``x_forwarded``: the listener's, whether to trust X-Forwarded-For."""
    app = new_listener_app(RESOURCE_NAMES if resources is None else resources)
    app[TRUST_X_FORWARDED] = x_forwarded
    app[HS] = hs
    app[CONFIG] = hs.config
    app[SIGNING_KEY] = hs.signing_key
    app[CLOCK] = hs.clock
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
        for listener in hs.config.listeners:
            await _start_listener(hs, listener, runners)
        # Catch up on what was queued before a restart, and deliver from now on.
        await hs.federation_sender.start()
        # Room deletions a previous run left unfinished (their status is in the database).
        await hs.room_deletion.resume()
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
        # After the runners: in-flight handlers may still have been making outbound requests.
        await hs.federation_sender.stop()
        await hs.e2e_edus.stop()  # background resyncs of remote users' device lists
        await hs.federation_client.close()
    logger.info("stopped")


def run(config: HomeserverConfig) -> None:
    """Start the server from a loaded config and block until it is told to stop.

    Raises ConfigError, KeyStorageError or StartupError for the CLI to report.
    """
    logging_setup = configure_logging(config.logging)
    for warning in config.warnings:
        logger.warning("%s", warning)
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
    try:
        await serve(hs, logging_setup=logging_setup)
    finally:
        await hs.store.db.close()
