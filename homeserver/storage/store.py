"""The storage facade: one object holding every store, built from a :class:`Database`."""

from __future__ import annotations

from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.admin_destinations import AdminDestinationsStore
from homeserver.storage.admin_media import AdminMediaStore
from homeserver.storage.admin_room_ops import AdminRoomOpsStore
from homeserver.storage.admin_rooms import AdminRoomsStore
from homeserver.storage.admin_user_data import AdminUserDataStore
from homeserver.storage.admin_users import AdminUsersStore
from homeserver.storage.aliases import AliasesStore
from homeserver.storage.client_ips import ClientIpsStore
from homeserver.storage.database import Database
from homeserver.storage.device_inbox import DeviceInboxStore
from homeserver.storage.device_list_sharing import DeviceListSharingStore
from homeserver.storage.device_lists import DeviceListsStore
from homeserver.storage.directory import DirectoryStore
from homeserver.storage.e2e_keys import E2EKeysStore
from homeserver.storage.events import EventsStore
from homeserver.storage.federation_inbound import FederationInboundStore
from homeserver.storage.filters import FiltersStore
from homeserver.storage.hierarchy import HierarchyStore
from homeserver.storage.history_purge import HistoryPurgeStore
from homeserver.storage.key_backup import KeyBackupStore
from homeserver.storage.keys import KeysStore
from homeserver.storage.leases import LeasesStore
from homeserver.storage.media import MediaStore
from homeserver.storage.out_of_band import OutOfBandStore
from homeserver.storage.outbox import OutboxStore
from homeserver.storage.persist import EventPersister
from homeserver.storage.presence import PresenceStore
from homeserver.storage.profiles import ProfilesStore
from homeserver.storage.push_actions import PushActionsStore
from homeserver.storage.push_rules import PushRulesStore
from homeserver.storage.pushers import PushersStore
from homeserver.storage.receipts import ReceiptsStore
from homeserver.storage.registration_tokens import RegistrationTokensStore
from homeserver.storage.relations import RelationsStore
from homeserver.storage.remote_device_lists import RemoteDeviceListsStore
from homeserver.storage.reports import ReportsStore
from homeserver.storage.room_deletions import RoomDeletionsStore
from homeserver.storage.room_purge import RoomPurgeStore
from homeserver.storage.room_use import RoomUseStore
from homeserver.storage.rooms import RoomsStore
from homeserver.storage.search import SearchStore
from homeserver.storage.state import StateStore
from homeserver.storage.stream_ids import persisted_up_to_all
from homeserver.storage.sync import SyncStore
from homeserver.storage.ui_auth import UIAuthStore
from homeserver.storage.upgrade_audit import UpgradeAuditStore
from homeserver.storage.upgrade_follows import UpgradeFollowsStore
from homeserver.storage.upgrades import UpgradesStore
from homeserver.storage.user_directory import UserDirectoryStore
from homeserver.storage.users import UsersStore
from homeserver.storage.visibility import VisibilityStore


class Store:
    """``store.events``, ``store.state``, ``store.rooms``, ``store.persister``, ``store.users``,
    ``store.keys``, ``store.aliases``, ``store.outbox`` over one database.

    Stores keep only caches of immutable or explicitly invalidated data, so several processes
    may each build a ``Store`` over one PostgreSQL database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.events = EventsStore(db)
        self.state = StateStore(db, self.events)
        self.rooms = RoomsStore(db)
        self.persister = EventPersister(db, self.events, self.state, self.rooms)
        self.users = UsersStore(db)
        self.profiles = ProfilesStore(db)
        self.user_directory = UserDirectoryStore(db)
        self.ui_auth = UIAuthStore(db)
        self.keys = KeysStore(db)
        self.aliases = AliasesStore(db)
        self.directory = DirectoryStore(db, self.events)
        self.hierarchy = HierarchyStore(db, self.events)
        self.outbox = OutboxStore(db)
        self.leases = LeasesStore(db)
        self.account_data = AccountDataStore(db)
        self.receipts = ReceiptsStore(db)
        self.presence = PresenceStore(db)
        self.filters = FiltersStore(db)
        self.push_rules = PushRulesStore(db, self.account_data)
        # Notifications (push actions) and pushers with their delivery queue.
        self.push_actions = PushActionsStore(db)
        self.pushers = PushersStore(db)
        self.upgrades = UpgradesStore(db, self.account_data, self.push_rules)
        self.upgrade_audit = UpgradeAuditStore(db)
        self.upgrade_follows = UpgradeFollowsStore(db)
        self.sync = SyncStore(db, self.events)
        self.visibility = VisibilityStore(db)
        self.room_use = RoomUseStore(db)
        self.out_of_band = OutOfBandStore(db)
        self.federation_inbound = FederationInboundStore(db)
        # End-to-end encryption: keys, device lists, to-device messages, key backups.
        self.e2e_keys = E2EKeysStore(db)
        self.device_lists = DeviceListsStore(db)
        self.device_inbox = DeviceInboxStore(db)
        self.remote_device_lists = RemoteDeviceListsStore(db)
        self.device_list_sharing = DeviceListSharingStore(db)
        self.key_backup = KeyBackupStore(db)
        # The admin API (/_synapse/admin).
        self.admin_rooms = AdminRoomsStore(db, self.events)
        self.admin_users = AdminUsersStore(db)
        self.admin_user_data = AdminUserDataStore(db)
        self.client_ips = ClientIpsStore(db)
        self.registration_tokens = RegistrationTokensStore(db)
        self.admin_destinations = AdminDestinationsStore(db)
        self.room_deletions = RoomDeletionsStore(db)
        self.reports = ReportsStore(db)
        self.admin_room_ops = AdminRoomOpsStore(db)
        self.admin_media = AdminMediaStore(db)
        self.room_purge = RoomPurgeStore(db, self.events, self.state)
        self.history_purge = HistoryPurgeStore(db, self.events, self.state)
        # The media repository.
        self.media = MediaStore(db)
        self.relations = RelationsStore(db)
        # The full-text index of room events (POST /search).
        self.search = SearchStore(db)
        # The one write path for events, also reachable from the events area.
        self.persist_events = self.persister.persist_events
        self.persist_events_txn = self.persister.persist_events_txn

    async def stream_positions(self) -> dict[str, int]:
        """Every allocated stream's persisted-up-to position (``stream_ids.STREAMS``): how
        far a reader may read each; read together for a /sync token."""
        return await persisted_up_to_all(self.db)
