"""The account services the HTTP layer uses, built together because they share the UIA
sessions, the password check and the rate limiters."""

from __future__ import annotations

from homeserver.accounts.account import AccountService
from homeserver.accounts.client_ips import ClientIpRecorder
from homeserver.accounts.device_removal import DeviceRemoval
from homeserver.accounts.devices import DeviceService
from homeserver.accounts.login import LoginService
from homeserver.accounts.reauth import Reauthenticator
from homeserver.accounts.registration import RegistrationService
from homeserver.accounts.registration_tokens import RegistrationTokens
from homeserver.accounts.shared_secret import SharedSecretRegistration
from homeserver.accounts.uia import UserInteractiveAuth
from homeserver.clock import WallClock
from homeserver.config import HomeserverConfig
from homeserver.ratelimit import RateLimiters
from homeserver.storage import Store
from homeserver.streams.notifier import Notifier


class Accounts:
    """``registration``, ``shared_secret``, ``login``, ``devices``, ``account``; beside them
    ``reauth`` (password re-entry), ``device_removal`` for other areas and ``client_ips``
    (where each session is used from, fed by authentication)."""

    def __init__(
        self,
        store: Store,
        config: HomeserverConfig,
        clock: WallClock,
        ratelimiters: RateLimiters,
        notifier: Notifier | None = None,
    ) -> None:
        server_name = config.server_name
        self.device_removal = DeviceRemoval(store, server_name, clock, notifier)
        uia = UserInteractiveAuth(store, clock)
        self.client_ips = ClientIpRecorder(
            store.client_ips, clock, int(config.server.user_ips_max_age * 1000)
        )
        self.registration_tokens = RegistrationTokens(store.registration_tokens, clock)
        self.registration = RegistrationService(
            store,
            server_name,
            config.registration,
            clock,
            ratelimiters.registration,
            uia,
            self.registration_tokens,
        )
        self.shared_secret = SharedSecretRegistration(
            store,
            server_name,
            config.registration.registration_shared_secret,
            clock,
            ratelimiters.registration_nonce,
        )
        self.login = LoginService(store, server_name, clock, ratelimiters, self.device_removal)
        self.reauth = Reauthenticator(uia, self.login, ratelimiters)
        self.devices = DeviceService(store, self.reauth, self.device_removal, self.client_ips)
        self.account = AccountService(store, self.reauth, self.device_removal)
