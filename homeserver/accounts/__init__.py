"""Accounts: registration, login, devices, user-interactive auth and profiles.

:class:`homeserver.accounts.service.Accounts` bundles the account services the HTTP layer uses;
:class:`homeserver.accounts.profile.ProfileService` is separate because room services need it too.
"""
