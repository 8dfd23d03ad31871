"""argon2 runs on a small executor of its own: a burst of logins cannot occupy the event
loop's default executor, which DNS resolution (getaddrinfo) needs."""

from __future__ import annotations

import asyncio
import threading

import pytest

from homeserver.accounts import sessions
from homeserver.crypto import passwords

GENEROUS = 15.0


async def test_a_hashing_burst_leaves_dns_resolution_free(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    running: list[str] = []
    lock = threading.Lock()
    peak = 0

    def slow_hash(password: str) -> str:
        nonlocal peak
        with lock:
            running.append(threading.current_thread().name)
            peak = max(peak, len(running))
        release.wait(GENEROUS)
        with lock:
            running.pop()
        return "hash:" + password

    monkeypatch.setattr(passwords, "hash_password", slow_hash)
    burst = [asyncio.create_task(sessions.hash_password_async(f"pw{i}")) for i in range(40)]
    await asyncio.sleep(0)  # let the burst reach the executor
    try:
        resolved = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo("localhost", 80), GENEROUS / 3
        )
        assert resolved
    finally:
        release.set()
    hashes = await asyncio.wait_for(asyncio.gather(*burst), GENEROUS)
    assert hashes == [f"hash:pw{i}" for i in range(40)]
    assert 1 <= peak <= passwords.HASHING_THREADS


async def test_hash_and_verify_round_trip() -> None:
    hashed = await sessions.hash_password_async("correct horse")
    assert await sessions.verify_password_async(hashed, "correct horse")
    assert not await sessions.verify_password_async(hashed, "wrong")
