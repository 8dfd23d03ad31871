"""Password hashing with argon2id (argon2-cffi's recommended parameters).

The async forms run on an executor of their own, at most HASHING_THREADS at once: argon2 takes
tens of milliseconds of CPU and memory per call, and on the event loop's default executor a
burst of logins would queue ahead of everything else using it, DNS resolution (getaddrinfo) of
federation requests among them. Excess hashing calls wait for a free thread instead.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def configure_hashing(*, time_cost: int, memory_cost: int, parallelism: int) -> None:
    """Hash new passwords with these argon2id parameters (``password_hashing`` in the config;
    set once at start-up). Verification reads each hash's own parameters, so hashes made
    before keep working, and ``needs_rehash`` flags them for re-hashing at login."""
    global _hasher
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)

#: One hashing thread per core, at most four: more threads would not hash faster.
HASHING_THREADS = max(1, min(4, os.cpu_count() or 1))
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _hashing_executor() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(HASHING_THREADS, thread_name_prefix="argon2")
        return _executor


async def hash_password_async(password: str) -> str:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_hashing_executor(), hash_password, password)


async def verify_password_async(password_hash: str, password: str) -> bool:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        _hashing_executor(), verify_password, password_hash, password
    )


def hash_password(password: str) -> str:
    """An encoded argon2id hash (salt and parameters included) of ``password``."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; False for a malformed hash too."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash uses weaker parameters than today's and should be replaced at login."""
    return _hasher.check_needs_rehash(password_hash)
