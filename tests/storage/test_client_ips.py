"""Where sessions are used from: batches written by several processes at once, and a batch whose
write failed kept for the next flush."""

from __future__ import annotations

import asyncio

import pytest

from homeserver.accounts.client_ips import ClientIpRecorder
from homeserver.storage import Store
from homeserver.storage.client_ips import ClientIpEntry
from tests.conftest import OpenTestDatabase

ALICE = "@alice:example.org"
TOKENS = [(f"tok{i:02}", f"DEV{i % 7}") for i in range(24)]


async def _alice_with_tokens(store: Store) -> None:
    await store.users.create_user(ALICE, "h", created_ts=1)
    for token_hash, device_id in TOKENS:
        await store.users.upsert_device(ALICE, device_id)
        await store.users.add_access_token(token_hash, ALICE, device_id, created_ts=1)


def _batch(ts: int, *, reverse: bool) -> list[ClientIpEntry]:
    entries = [
        ClientIpEntry(ALICE, token_hash, device_id, f"10.0.0.{n % 3}", "agent", ts + n)
        for n, (token_hash, device_id) in enumerate(TOKENS)
    ]
    return entries[::-1] if reverse else entries


async def test_processes_flushing_the_same_tokens_at_once_do_not_deadlock(
    store: Store, open_test_database: OpenTestDatabase
) -> None:
    """Every process sees the same tokens (any request reaches any process); their batches arrive
    in any order. Written in one order, they queue instead of deadlocking."""
    await _alice_with_tokens(store)
    other = Store(await open_test_database())

    for round_ in range(5):
        ts = 1_000 * (round_ + 1)
        await asyncio.gather(
            store.client_ips.record(_batch(ts, reverse=False)),
            other.client_ips.record(_batch(ts + 500, reverse=True)),
        )

    for s in (store, other):
        assert s.db.stats["record_client_ips"].retries == 0
        assert s.db.stats["record_client_ips"].failures == 0
    newest = 5_500 + len(TOKENS) - 1
    assert await store.db.fetchval("SELECT MAX(last_used) FROM access_tokens") == newest
    devices = await store.db.fetchall(
        "SELECT device_id, last_seen_ts FROM devices WHERE user_id = ? ORDER BY device_id", ALICE
    )
    # A device's newest use in the last batch: its highest-numbered token there.
    expected = {
        device_id: 5_500 + max(n for n, (_, d) in enumerate(TOKENS) if d == device_id)
        for _, device_id in TOKENS
    }
    assert dict(devices) == expected
    rows = await store.client_ips.connections(ALICE)
    assert len(rows) == len(TOKENS)


class _FailingOnce:
    def __init__(self) -> None:
        self.written: list[list[ClientIpEntry]] = []
        self.fail = True

    async def record(self, entries: list[ClientIpEntry]) -> None:
        if self.fail:
            self.fail = False
            raise ConnectionError("database went away")
        self.written.append(entries)


async def test_a_batch_whose_write_failed_is_written_at_the_next_flush() -> None:
    store = _FailingOnce()
    now = [10_000]
    recorder = ClientIpRecorder(store, lambda: now[0], max_age_ms=1)  # type: ignore[arg-type]
    recorder.record(ALICE, "tokA", "DEV", "10.0.0.1", "agent")
    recorder.record(ALICE, "tokB", "DEV", "10.0.0.1", "agent")
    with pytest.raises(ConnectionError):
        await recorder.flush()
    now[0] += 200_000  # past the granularity: tokA's new use replaces the kept one
    recorder.record(ALICE, "tokA", "DEV", "10.0.0.1", "agent")
    await recorder.flush()
    [written] = store.written
    assert sorted((e.token_hash, e.last_seen) for e in written) == [
        ("tokA", 210_000),
        ("tokB", 10_000),
    ]
