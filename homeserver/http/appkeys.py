"""Typed keys under which homeserver.app hands each handler the one object it uses.

A handler reads the service it calls (``request.app[ROOM_EVENTS]``), never the whole
``Homeserver`` nor the store: what a handler can reach is what its module imports from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from nacl.signing import SigningKey

from homeserver.clock import WallClock
from homeserver.config import HomeserverConfig

if TYPE_CHECKING:
    from homeserver.accountdata.receipts import ReceiptsService
    from homeserver.accountdata.service import AccountDataService
    from homeserver.accounts.profile import ProfileService
    from homeserver.accounts.registration_tokens import RegistrationTokens
    from homeserver.accounts.service import Accounts
    from homeserver.accounts.user_directory import UserDirectoryService
    from homeserver.admin.destinations import AdminDestinations
    from homeserver.admin.history_purge import HistoryPurgeService, ScheduledTasks
    from homeserver.admin.lifecycle import RoomLifecycleAdmin
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
    from homeserver.e2e.key_backup import KeyBackupService
    from homeserver.e2e.keys import E2EKeysService
    from homeserver.e2e.to_device import ToDeviceService
    from homeserver.ephemeral.presence import PresenceService
    from homeserver.ephemeral.typing import TypingService
    from homeserver.federation.invites import InboundInvites
    from homeserver.federation.joins import ResidentMembership
    from homeserver.federation.keyring import Keyring
    from homeserver.federation.queries import FederationQueries
    from homeserver.federation.sender import FederationSender
    from homeserver.federation.serving import FederationEventServer
    from homeserver.federation.transactions import TransactionHandler
    from homeserver.media.repository import MediaRepository
    from homeserver.metrics import HomeserverMetrics
    from homeserver.push.pushers import PushersService
    from homeserver.push.rules import PushRulesService
    from homeserver.ratelimit import RateLimiters
    from homeserver.rooms.aliases import AliasService
    from homeserver.rooms.creation import RoomCreationService
    from homeserver.rooms.directory import PublicRoomList
    from homeserver.rooms.events_service import RoomEventsService
    from homeserver.rooms.hierarchy import HierarchyService
    from homeserver.rooms.membership import MembershipService
    from homeserver.rooms.room_summary import RoomSummaryService
    from homeserver.rooms.search import RoomSearch
    from homeserver.rooms.timestamp_lookup import TimestampLookup
    from homeserver.rooms.upgrade import RoomUpgradeService
    from homeserver.sync.filters import FilterService
    from homeserver.sync.notifications import NotificationsService
    from homeserver.sync.sync import SyncService

CONFIG = web.AppKey("config", HomeserverConfig)
SIGNING_KEY = web.AppKey("signing_key", SigningKey)
CLOCK = web.AppKey("clock", WallClock)

ACCOUNTS: web.AppKey[Accounts] = web.AppKey("accounts")
ACCOUNT_DATA: web.AppKey[AccountDataService] = web.AppKey("account_data")
ADMIN_DESTINATIONS: web.AppKey[AdminDestinations] = web.AppKey("admin_destinations")
ADMIN_LIFECYCLE: web.AppKey[RoomLifecycleAdmin] = web.AppKey("admin_lifecycle")
ADMIN_MEDIA: web.AppKey[AdminMedia] = web.AppKey("admin_media")
ADMIN_ROOMS: web.AppKey[AdminRooms] = web.AppKey("admin_rooms")
ADMIN_ROOM_OPS: web.AppKey[AdminRoomOps] = web.AppKey("admin_room_ops")
ADMIN_USERS: web.AppKey[AdminUsers] = web.AppKey("admin_users")
ADMIN_USER_DETAILS: web.AppKey[AdminUserDetails] = web.AppKey("admin_user_details")
REGISTRATION_TOKENS: web.AppKey[RegistrationTokens] = web.AppKey("registration_tokens")
USER_REDACTIONS: web.AppKey[UserRedactions] = web.AppKey("user_redactions")
ALIASES: web.AppKey[AliasService] = web.AppKey("aliases")
E2E_KEYS: web.AppKey[E2EKeysService] = web.AppKey("e2e_keys")
FEDERATION_EVENTS: web.AppKey[FederationEventServer] = web.AppKey("federation_events")
FEDERATION_QUERIES: web.AppKey[FederationQueries] = web.AppKey("federation_queries")
FEDERATION_SENDER: web.AppKey[FederationSender] = web.AppKey("federation_sender")
FEDERATION_TRANSACTIONS: web.AppKey[TransactionHandler] = web.AppKey("federation_transactions")
FILTERS: web.AppKey[FilterService] = web.AppKey("filters")
HIERARCHY: web.AppKey[HierarchyService] = web.AppKey("hierarchy")
HISTORY_PURGE: web.AppKey[HistoryPurgeService] = web.AppKey("history_purge")
INBOUND_INVITES: web.AppKey[InboundInvites] = web.AppKey("inbound_invites")
KEY_BACKUP: web.AppKey[KeyBackupService] = web.AppKey("key_backup")
KEYRING: web.AppKey[Keyring] = web.AppKey("keyring")
MEDIA: web.AppKey[MediaRepository] = web.AppKey("media")
MEMBERSHIP: web.AppKey[MembershipService] = web.AppKey("membership")
METRICS: web.AppKey[HomeserverMetrics] = web.AppKey("metrics")
NOTIFICATIONS: web.AppKey[NotificationsService] = web.AppKey("notifications")
PRESENCE: web.AppKey[PresenceService] = web.AppKey("presence")
PROFILES: web.AppKey[ProfileService] = web.AppKey("profiles")
PUSH_RULES: web.AppKey[PushRulesService] = web.AppKey("push_rules")
PUSHERS: web.AppKey[PushersService] = web.AppKey("pushers")
RATELIMITERS: web.AppKey[RateLimiters] = web.AppKey("ratelimiters")
RECEIPTS: web.AppKey[ReceiptsService] = web.AppKey("receipts")
REPORTS: web.AppKey[ReportsService] = web.AppKey("reports")
RESIDENT_MEMBERSHIP: web.AppKey[ResidentMembership] = web.AppKey("resident_membership")
ROOM_CREATION: web.AppKey[RoomCreationService] = web.AppKey("room_creation")
ROOM_DELETION: web.AppKey[RoomDeletionService] = web.AppKey("room_deletion")
ROOM_DIRECTORY: web.AppKey[PublicRoomList] = web.AppKey("room_directory")
ROOM_EVENTS: web.AppKey[RoomEventsService] = web.AppKey("room_events")
ROOM_SUMMARY: web.AppKey[RoomSummaryService] = web.AppKey("room_summary")
ROOM_SEARCH: web.AppKey[RoomSearch] = web.AppKey("room_search")
ROOM_UPGRADES: web.AppKey[RoomUpgradeService] = web.AppKey("room_upgrades")
SCHEDULED_TASKS: web.AppKey[ScheduledTasks] = web.AppKey("scheduled_tasks")
SERVER_NOTICES: web.AppKey[ServerNotices] = web.AppKey("server_notices")
SYNC: web.AppKey[SyncService] = web.AppKey("sync")
TIMESTAMP_LOOKUP: web.AppKey[TimestampLookup] = web.AppKey("timestamp_lookup")
TO_DEVICE: web.AppKey[ToDeviceService] = web.AppKey("to_device")
TYPING: web.AppKey[TypingService] = web.AppKey("typing")
UPGRADE_PREVIEW: web.AppKey[UpgradePreview] = web.AppKey("upgrade_preview")
USER_DIRECTORY: web.AppKey[UserDirectoryService] = web.AppKey("user_directory")
