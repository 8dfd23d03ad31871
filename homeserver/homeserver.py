"""``Homeserver``: every service, built once, each from the collaborators it needs.

The constructor is the dependency order: a service is built after everything it uses and gets
all of it through its own constructor, so nothing is assigned to a service afterwards.
``homeserver.app`` builds one of these and hands each service to the handlers under its own
typed key (``homeserver.http.appkeys``).
"""

from __future__ import annotations

from nacl.signing import SigningKey

from homeserver.accountdata.receipts import ReceiptsService
from homeserver.accountdata.service import AccountDataService
from homeserver.accounts.profile import ProfileService
from homeserver.accounts.service import Accounts
from homeserver.accounts.user_directory import UserDirectoryService
from homeserver.admin.destinations import AdminDestinations
from homeserver.admin.history_purge import HistoryPurgeService, ScheduledTasks
from homeserver.admin.lifecycle import RoomLifecycleAdmin, UpgradeFailureRecorder
from homeserver.admin.media import AdminMedia
from homeserver.admin.reports import ReportsService
from homeserver.admin.room_deletion import RoomDeletionService
from homeserver.admin.room_ops import AdminRoomOps
from homeserver.admin.rooms import AdminRooms
from homeserver.admin.server_notices import ServerNotices
from homeserver.admin.upgrade_preview import UpgradePreview
from homeserver.admin.user_details import AdminUserDetails
from homeserver.admin.user_redaction import UserRedactions
from homeserver.admin.users import AdminUsers
from homeserver.clock import WallClock, time_ms
from homeserver.config import HomeserverConfig
from homeserver.e2e.key_backup import KeyBackupService
from homeserver.e2e.keys import E2EKeysService
from homeserver.e2e.to_device import ToDeviceService
from homeserver.ephemeral.presence import PresenceService
from homeserver.ephemeral.typing import TypingService
from homeserver.events.builder import Signer
from homeserver.federation.client import FederationClient
from homeserver.federation.e2e_edus import E2EEdus
from homeserver.federation.ephemeral_edus import EphemeralEdus, combine_edu_handlers
from homeserver.federation.invites import InboundInvites
from homeserver.federation.joins import ResidentMembership
from homeserver.federation.keyring import Keyring
from homeserver.federation.queries import FederationQueries
from homeserver.federation.received import ReceivedEvents
from homeserver.federation.remote_device_cache import RemoteDeviceListCache
from homeserver.federation.remote_hierarchy import RemoteHierarchy
from homeserver.federation.remote_keys import RemoteKeys
from homeserver.federation.remote_membership import RemoteMembership
from homeserver.federation.remote_queries import RemoteQueries
from homeserver.federation.remote_upgrades import RemoteUpgrades
from homeserver.federation.sender import FederationSender
from homeserver.federation.serving import FederationEventServer
from homeserver.federation.transactions import TransactionHandler
from homeserver.federation.upgrade_follows import UpgradeFollower
from homeserver.media.files import MediaFiles
from homeserver.media.remote import RemoteMediaFetcher
from homeserver.media.repository import MediaRepository
from homeserver.metrics import HomeserverMetrics, room_metrics_subscriber
from homeserver.modules import load_modules
from homeserver.push.evaluation import PushEvaluator
from homeserver.push.gateway import PushSender
from homeserver.push.pushers import PushersService
from homeserver.push.rules import PushRulesService
from homeserver.ratelimit import RateLimiters
from homeserver.rooms.aliases import AliasService
from homeserver.rooms.audit import audit_log_subscriber
from homeserver.rooms.bus import DomainEventBus
from homeserver.rooms.creation import RoomCreationService
from homeserver.rooms.directory import PublicRoomList
from homeserver.rooms.events_service import RoomEventsService
from homeserver.rooms.hierarchy import HierarchyService
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.room_summary import RoomSummaryService
from homeserver.rooms.search import RoomSearch
from homeserver.rooms.sender import EventSender
from homeserver.rooms.timestamp_lookup import TimestampLookup
from homeserver.rooms.upgrade import RoomUpgradeService
from homeserver.rooms.upgrade_spaces import SpaceLinks
from homeserver.storage import Store
from homeserver.storage.user_overrides import UserOverrides
from homeserver.streams.leases import LeaseKeeper, SingletonJob
from homeserver.streams.notifier import Notifier
from homeserver.streams.redis_bus import RedisBus
from homeserver.streams.redis_ratelimit import RedisBuckets
from homeserver.sync.filters import FilterService
from homeserver.sync.notifications import NotificationsService
from homeserver.sync.sync import SyncService


class Homeserver:
    """Config, keys, the store and the services. Add a service with one statement below, after
    the services it uses."""

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
        server_name = config.server_name
        self.signer = Signer(server_name, signing_key)
        self.bus = DomainEventBus()
        # This process among those sharing the database: its heartbeat and the leases of the
        # work it alone does (started by serve()). Leases count real time, whatever ``clock``.
        self.leases = LeaseKeeper(
            store,
            config.instance.instance_name,
            time_ms,
            timeout_ms=config.instance.lease_timeout_ms,
        )
        self.notifier = Notifier()
        # Shadow bans and rate-limit overrides, read on every send and limiter check.
        self.user_overrides = UserOverrides(store.admin_user_data)
        # Several processes: wake-ups, cache invalidations and rate limits shared through Redis
        # (PostgreSQL only: SQLite is one process). The fallback poll compares /sync's tokens.
        self.redis_bus: RedisBus | None = None
        shared_buckets: RedisBuckets | None = None
        if config.redis.enabled and store.db.engine != "sqlite":
            self.redis_bus = RedisBus(
                config.redis,
                config.instance_name,
                self.notifier,
                store,
                probe=lambda: self.sync.current_token(),
            )
            shared_buckets = RedisBuckets(self.redis_bus)
        self.ratelimiters = RateLimiters(
            config.ratelimiting,
            overrides=self.user_overrides.ratelimit_pair,
            shared=shared_buckets,
        )
        self.sender = EventSender(store, self.signer, clock=clock, notifier=self.notifier)
        self.metrics = HomeserverMetrics(server_name)
        self.metrics.watch_store(store)
        if self.redis_bus is not None:
            bus = self.redis_bus
            self.metrics.watch_redis(lambda: bus.connected)
            # An admin's shadow ban, suspension or rate-limit override holds on every process
            # at once, not after the others' next periodic reload.
            overrides = self.user_overrides
            overrides.change_listeners.append(lambda: bus.publish({"t": "user_overrides"}))
            bus.subscribe("user_overrides", lambda _item: overrides.reload_soon())
        self.bus.subscribe(audit_log_subscriber)
        self.modules = load_modules(config.modules, server_name, self.bus)
        self.bus.subscribe(room_metrics_subscriber(self.metrics))

        # Federation transport: signed requests out, key fetching and signature checks in, and
        # the queries we ask of other servers (their aliases, their users' profiles).
        self.federation_client = FederationClient(
            server_name, signing_key, config.federation, clock=clock
        )
        self.keyring = Keyring(
            store.keys,
            self.federation_client,
            clock,
            server_name,
            signing_key,
            config.keys.old_signing_keys,
        )
        self.remote_queries = RemoteQueries(self.federation_client)

        # Accounts and rooms.
        self.profiles = ProfileService(
            store,
            self.sender,
            server_name,
            remote_lookup=self.remote_queries.remote_profile,
            suspended=self.user_overrides.is_suspended,
        )
        self.accounts = Accounts(store, config, clock, self.ratelimiters, notifier=self.notifier)
        self.user_directory = UserDirectoryService(store, config.user_directory)
        self.room_creation = RoomCreationService(
            config=config,
            store=store,
            signer=self.signer,
            ratelimiter=self.ratelimiters.room_creation,
            notifier=self.notifier,
            bus=self.bus,
            clock=clock,
            profiles=self.profiles.get_profile,
            invite_limiter=self.ratelimiters.invites,
            suspended=self.user_overrides.is_suspended,
            shadow_banned=self.user_overrides.is_shadow_banned,
        )
        self.aliases = AliasService(
            store=store,
            sender=self.sender,
            server_name=server_name,
            clock=clock,
            remote_resolver=self.remote_queries.resolve_remote_alias,
        )
        self.room_directory = PublicRoomList(store=store)
        # Spaces and room previews; rooms we are not in are asked of other servers.
        self.remote_hierarchy = RemoteHierarchy(self.federation_client)
        self.hierarchy = HierarchyService(
            store=store, server_name=server_name, clock=clock, remote=self.remote_hierarchy.fetch
        )
        self.room_summary = RoomSummaryService(
            store=store,
            server_name=server_name,
            resolve_alias=self.aliases.resolve,
            remote=self.remote_hierarchy.fetch,
        )
        self.room_upgrades = RoomUpgradeService(
            config=config,
            store=store,
            signer=self.signer,
            ratelimiter=self.ratelimiters.room_creation,
            notifier=self.notifier,
            bus=self.bus,
            clock=clock,
            space_links=SpaceLinks(store, self.sender, server_name),
        )

        # Receiving events over federation, and our users joining rooms through other servers;
        # a tombstone or a join there continues an upgrade (remote_upgrades).
        self.remote_upgrades = RemoteUpgrades(
            store=store,
            notifier=self.notifier,
            clock=clock,
            server_name=server_name,
            follow=config.room_upgrades.follow_remote_upgrades,
        )
        self.received_events = ReceivedEvents(
            store=store,
            keyring=self.keyring,
            client=self.federation_client,
            notifier=self.notifier,
            clock=clock,
            tombstone_hook=self.remote_upgrades.on_tombstone,
        )
        self.remote_membership = RemoteMembership(
            store=store,
            signer=self.signer,
            client=self.federation_client,
            received=self.received_events,
            notifier=self.notifier,
            clock=clock,
            on_joined=self.remote_upgrades.on_joined,
        )
        self.membership = MembershipService(
            store,
            self.sender,
            self.ratelimiters,
            server_name=server_name,
            profiles=self.profiles.get_profile,
            remote=self.remote_membership,
            remote_aliases=self.remote_queries.resolve_remote_alias,
            on_joined=self.remote_upgrades.on_joined,
            on_joined_many=self.remote_upgrades.on_joined_many,
            profiles_many=self.profiles.get_profiles,
            shadow_banned=self.user_overrides.is_shadow_banned,
            suspended=self.user_overrides.is_suspended,
        )
        # Our users following upgrades made by other servers (started by serve()).
        self.upgrade_follower = UpgradeFollower(
            store=store,
            membership=self.membership,
            federation_config=config.federation,
            clock=clock,
            server_name=server_name,
            metrics=self.metrics,
        )
        self.room_events = RoomEventsService(
            store,
            self.sender,
            self.ratelimiters,
            clock,
            membership=self.membership,
            shadow_banned=self.user_overrides.is_shadow_banned,
            suspended=self.user_overrides.is_suspended,
        )
        self.room_search = RoomSearch(store, self.room_events.reader)

        # Our admin additions: the lifecycle, the upgrade preview, failed upgrades kept.
        self.bus.subscribe(UpgradeFailureRecorder(store.upgrade_audit, clock))
        self.admin_lifecycle = RoomLifecycleAdmin(store, clock)
        self.upgrade_preview = UpgradePreview(store, self.room_upgrades, server_name)

        # /sync and what it reads.
        self.filters = FilterService(store)
        self.push_rules = PushRulesService(store, self.notifier)
        self.account_data = AccountDataService(store, self.notifier, self.push_rules)
        self.receipts = ReceiptsService(
            store,
            self.notifier,
            clock,
            server_name,
            shadow_banned=self.user_overrides.is_shadow_banned,
        )
        # Presence (stored) and typing (in memory), shown in /sync and sent to other servers.
        self.presence = PresenceService(
            store,
            self.notifier,
            clock,
            server_name,
            enabled=config.presence.enabled,
            limiter=self.ratelimiters.presence,
            sync_limiter=self.ratelimiters.presence_sync,
            replication=self.redis_bus,
        )
        self.typing = TypingService(
            store,
            self.notifier,
            clock,
            server_name,
            limiter=self.ratelimiters.typing,
            on_active=self.presence.bump_active,
            shadow_banned=self.user_overrides.is_shadow_banned,
            replication=self.redis_bus,
        )
        self.sync = SyncService(
            store,
            self.notifier,
            self.push_rules,
            clock,
            typing=self.typing,
            presence=self.presence,
        )
        # Notifications: push rules evaluated behind the events stream (started by serve()),
        # GET /notifications, pushers and their delivery to push gateways (IP policy as
        # federation's, as Synapse's pushers).
        self.notifications = NotificationsService(store, clock)
        self.pushers = PushersService(store, config.federation, clock)
        self.push_sender = PushSender(store, config.federation, clock)
        self.push_evaluator = PushEvaluator(
            store,
            self.push_rules,
            self.notifier,
            clock,
            server_name,
            on_jobs=self.push_sender.wake,
            poll_interval_s=config.instance.poll_interval_seconds,
        )
        # Both on one process at a time (the evaluator wakes that process's sender).
        self.push_job = SingletonJob(
            self.leases, "push", self._start_push, self._stop_push
        )

        # Serving events to other servers (/state, /backfill …) and delivering the outbox
        # (started by serve(), after the listeners).
        self.federation_events = FederationEventServer(store, server_name, clock)
        self.federation_sender = FederationSender(
            store,
            self.federation_client,
            config.federation,
            clock,
            server_name,
            self.signer,
            keyring=self.keyring,
            metrics=self.metrics,
            leases=self.leases,
            poll_interval_s=config.instance.poll_interval_seconds,
        )

        # Other servers' users joining, leaving, knocking on and invited to our rooms, and the
        # queries other servers ask of us.
        self.resident_membership = ResidentMembership(
            store=store,
            signer=self.signer,
            received=self.received_events,
            notifier=self.notifier,
            wake_sender=self.federation_sender.wake,
            clock=clock,
        )
        self.inbound_invites = InboundInvites(
            store=store,
            signer=self.signer,
            received=self.received_events,
            notifier=self.notifier,
            clock=clock,
            limiter=self.ratelimiters.invites,
            on_invited=self.upgrade_follower.on_invite,
        )
        self.federation_queries = FederationQueries(
            store=store, aliases=self.aliases, server_name=server_name
        )

        # The media repository: files on disk named by content, other servers' media fetched
        # over federation and cached.
        media_files = MediaFiles(config.media.media_store_path)
        self.media = MediaRepository(
            store,
            config.media,
            server_name,
            clock,
            files=media_files,
            remote=RemoteMediaFetcher(
                self.federation_client,
                media_files,
                max_size=config.media.max_upload_size,
                concurrency=config.media.remote_media_download_concurrency,
            ),
            limiter=self.ratelimiters.media_create,
        )

        # Synapse's admin API (/_synapse/admin): rooms, room deletion, users, destinations.
        self.admin_rooms = AdminRooms(store, server_name, clock)
        self.reports = ReportsService(store, server_name, clock)
        self.timestamp_lookup = TimestampLookup(store)
        self.admin_media = AdminMedia(store, self.media, server_name)
        self.history_purge = HistoryPurgeService(store=store, server_name=server_name, clock=clock)
        self.scheduled_tasks = ScheduledTasks(store)
        self.server_notices = ServerNotices(
            store=store,
            config=config.server_notices,
            room_creation=self.room_creation,
            membership=self.membership,
            sender=self.sender,
            server_name=server_name,
            clock=clock,
        )
        self.admin_room_ops = AdminRoomOps(
            store=store,
            membership=self.membership,
            sender=self.sender,
            server_name=server_name,
            clock=clock,
        )
        self.room_deletion = RoomDeletionService(
            store=store,
            membership=self.membership,
            room_creation=self.room_creation,
            sender=self.sender,
            server_name=server_name,
            clock=clock,
            media=self.media,
            leases=self.leases,
        )
        self.admin_users = AdminUsers(
            store=store,
            membership=self.membership,
            profiles=self.profiles,
            server_name=server_name,
            clock=clock,
            device_removal=self.accounts.device_removal,
            client_ips=self.accounts.client_ips,
        )
        self.admin_user_details = AdminUserDetails(
            store=store,
            server_name=server_name,
            clock=clock,
            device_removal=self.accounts.device_removal,
            client_ips=self.accounts.client_ips,
            overrides=self.user_overrides,
        )
        self.user_redactions = UserRedactions(
            store,
            self.room_events,
            server_name,
            clock,
            config.instance_name,
            self.leases.instance_alive,
        )
        self.admin_destinations = AdminDestinations(store, self.federation_sender)

        # End-to-end encryption: to-device messages, other servers' device lists (resynced by
        # asking the server itself, which feeds the cache that answers key queries), the EDUs
        # of /send, clients' /keys/* and their key backups (/room_keys/*).
        self.to_device = ToDeviceService(
            store, self.notifier, server_name, clock, limiter=self.ratelimiters.to_device
        )
        self.e2e_edus = E2EEdus(
            store=store,
            remote_keys=RemoteKeys(client=self.federation_client),
            notifier=self.notifier,
            server_name=server_name,
            clock=clock,
        )
        self.remote_keys = RemoteKeys(
            client=self.federation_client,
            device_lists=RemoteDeviceListCache(store=store, resync=self.e2e_edus.resync_now),
        )
        self.ephemeral_edus = EphemeralEdus(
            store=store,
            typing=self.typing,
            presence=self.presence,
            notifier=self.notifier,
            clock=clock,
        )
        self.federation_transactions = TransactionHandler(
            store,
            self.received_events,
            clock,
            metrics=self.metrics,
            edu_handler=combine_edu_handlers(self.e2e_edus.on_edus, self.ephemeral_edus.on_edus),
        )
        self.e2e_keys = E2EKeysService(
            store,
            server_name=server_name,
            clock=clock,
            notifier=self.notifier,
            reauth=self.accounts.reauth,
            remote=self.remote_keys,
        )
        self.key_backup = KeyBackupService(store)

        # Stranded upgrade locks (lease expired, or their process gone), swept by one process.
        self.upgrade_recovery_job = SingletonJob(
            self.leases,
            "upgrade_recovery",
            every_round=self._recover_abandoned_upgrades,
        )

    async def _start_push(self) -> None:
        # Push rules for what committed since the last run, then the pushers' queues.
        await self.push_sender.start()
        self.push_evaluator.start()

    async def _stop_push(self) -> None:
        await self.push_evaluator.stop()
        await self.push_sender.stop()

    async def _recover_abandoned_upgrades(self) -> None:
        live = await self.leases.refresh_live_instances()
        await self.room_upgrades.recover_abandoned_upgrades(live, self.leases.instance_alive)

    @property
    def server_name(self) -> str:
        return self.config.server_name

    def is_mine(self, identifier: str) -> bool:
        """Whether a user ID / alias / v1-11 room ID names this server."""
        return identifier.split(":", 1)[-1] == self.config.server_name
