"""Creating accounts and login sessions (a device plus an access token) in the store.

Used by registration, login, shared-secret registration and the ``register-user`` command, so
that an account is always created the same way: user, profile, and (unless login is inhibited)
device and token in ONE transaction — a failure leaves no half-made account.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

# Re-exported: account code hashes through here (on the hashing executor, off the event loop).
from homeserver.crypto.passwords import hash_password_async as hash_password_async
from homeserver.crypto.passwords import verify_password_async as verify_password_async
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.storage.users import hash_access_token

#: Prefix of our access tokens (as Synapse's), so secret scanners can recognise a leaked one.
ACCESS_TOKEN_PREFIX = "syt_"
DEVICE_ID_LENGTH = 10


def new_access_token() -> str:
    """256 random bits; only its SHA-256 hash is ever stored."""
    return ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_device_id() -> str:
    """Ten random uppercase letters, like Synapse's device IDs."""
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(DEVICE_ID_LENGTH))


@dataclass(frozen=True, slots=True)
class DeviceRequest:
    """The device a login or registration asks for (``device_id`` None: make a new one)."""

    device_id: str | None = None
    display_name: str | None = None


@dataclass(frozen=True, slots=True)
class LoginSession:
    user_id: str
    device_id: str
    access_token: str


@dataclass(frozen=True, slots=True)
class CreatedAccount:
    user_id: str
    #: None when the caller asked for no login (``inhibit_login``, the CLI).
    session: LoginSession | None


async def _issue_session_txn(
    store: Store,
    txn: Transaction,
    user_id: str,
    device: DeviceRequest,
    *,
    existing: bool,
    now: int,
) -> LoginSession:
    device_id = device.device_id or new_device_id()
    if existing:
        # Spec: logging in on a known device invalidates the tokens it had; its name is kept.
        # The device's row before its tokens', the order the client-IP flush locks them in.
        await store.users.upsert_device_txn(txn, user_id, device_id, None)
        await store.users.delete_access_tokens_for_device_txn(txn, user_id, device_id)
    else:
        await store.users.upsert_device_txn(txn, user_id, device_id, device.display_name)
    token = new_access_token()
    await store.users.add_access_token_txn(
        txn, hash_access_token(token), user_id, device_id, created_ts=now
    )
    return LoginSession(user_id, device_id, token)


async def issue_session(
    store: Store, user_id: str, device: DeviceRequest, *, now: int
) -> LoginSession:
    """Log ``user_id`` in on ``device`` (reused if it exists) with a new access token."""
    existing = (
        device.device_id is not None
        and await store.users.get_device(user_id, device.device_id) is not None
    )

    async def run(txn: Transaction) -> LoginSession:
        # Safe to re-run: the new device ID and token are drawn again with each attempt, and
        # the session returned is the committed attempt's.
        return await _issue_session_txn(store, txn, user_id, device, existing=existing, now=now)

    # A deadlock with another process writing the device's or its tokens' rows is retried
    # rather than failing the login.
    return await store.db.run_in_transaction("issue_login_session", run)


async def create_account(
    store: Store,
    user_id: str,
    password_hash: str | None,
    *,
    now: int,
    admin: bool = False,
    displayname: str | None = None,
    login: DeviceRequest | None = None,
) -> CreatedAccount | None:
    """Create the user, its profile (display name defaults to the localpart, as in Synapse) and,
    when ``login`` is given, its first device and access token. None if ``user_id`` is taken
    (then nothing is written)."""
    if displayname is None:
        displayname = user_id[1:].split(":", 1)[0]
    async with store.db.transaction("create_account") as txn:
        if not await store.users.create_user_txn(
            txn, user_id, password_hash, created_ts=now, admin=admin
        ):
            return None
        await store.profiles.create_profile_txn(txn, user_id, displayname)
        session = None
        if login is not None:
            session = await _issue_session_txn(store, txn, user_id, login, existing=False, now=now)
    return CreatedAccount(user_id, session)
