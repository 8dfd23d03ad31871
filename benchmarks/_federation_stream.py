"""A fake remote server's user joined to a room on a resident server, streaming signed PDUs.

The remote (``tests/federation/fake_remote.py``: its own ed25519 key, served over HTTPS on
loopback) joins through the public federation API — ``make_join`` then ``v2/send_join`` — and
then builds transactions of signed ``m.room.message`` PDUs, each PDU's ``prev_events`` the one
before it, so the resident sees one linear stream with no gaps to fill. The resident is our
server or Synapse: only the federation API is used, so the same stream measures both.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from homeserver.federation.client import fed_path
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, EventIdFormat, RoomVersion
from tests.federation.fake_remote import FakeRemoteServer, ReceivedRequest

PDUS_PER_TRANSACTION = 50
_txn_ids = itertools.count()


class StreamError(RuntimeError):
    """The resident server refused a step of the join or of the stream."""


@dataclass(slots=True)
class Transaction:
    txn_id: str
    body: dict[str, Any]
    event_ids: list[str]


@dataclass(slots=True)
class RemoteMember:
    remote: FakeRemoteServer
    our_url: str
    our_name: str
    room_id: str
    room_version: RoomVersion
    user_id: str
    #: Auth events of a message from this user: (create,) power levels, the user's join.
    auth_event_ids: list[str]
    last_event_id: str
    depth: int
    sent: list[str] = field(default_factory=list)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        return await _call(self.remote, self.our_url, self.our_name, method, path, body)

    def build_transactions(self, count: int, per_transaction: int) -> list[Transaction]:
        """``count`` transactions of ``per_transaction`` chained, signed message PDUs (built
        ahead so that signing is not part of what a benchmark times)."""
        transactions = []
        for _ in range(count):
            pdus, ids = [], []
            for _ in range(per_transaction):
                self.depth += 1
                pdu = self.remote.sign_pdu(
                    self.room_version,
                    {
                        "type": "m.room.message",
                        "room_id": self.room_id,
                        "sender": self.user_id,
                        "origin": self.remote.server_name,
                        "origin_server_ts": int(time.time() * 1000),
                        "content": {"msgtype": "m.text", "body": f"stream #{self.depth}"},
                        "auth_events": list(self.auth_event_ids),
                        "prev_events": [self.last_event_id],
                        "depth": self.depth,
                    },
                )
                self.last_event_id = self.remote.event_id(self.room_version, pdu)
                pdus.append(pdu)
                ids.append(self.last_event_id)
            txn_id = f"bench-{time.time_ns()}-{next(_txn_ids)}"
            body = {
                "origin": self.remote.server_name,
                "origin_server_ts": int(time.time() * 1000),
                "pdus": pdus,
            }
            transactions.append(Transaction(txn_id, body, ids))
        return transactions

    async def send(self, transaction: Transaction) -> int:
        """PUT the transaction; how many of its PDUs the resident accepted (each answered with
        a result that has no ``error``: a PDU missing from the answer counts as refused)."""
        path = fed_path("/_matrix/federation/v1/send/{}", transaction.txn_id)
        data = await self.call("PUT", path, transaction.body)
        results = data.get("pdus", {}) if isinstance(data, dict) else {}
        accepted = [
            i
            for i in transaction.event_ids
            if isinstance(results.get(i), dict) and "error" not in results[i]
        ]
        if len(accepted) != len(transaction.event_ids):
            errors = {k: v for k, v in results.items() if "error" in v}
            missing = [i for i in transaction.event_ids if i not in results]
            raise StreamError(
                f"{len(errors)} PDUs refused, e.g. {next(iter(errors.items()), None)}; "
                f"{len(missing)} missing from the answer"
            )
        self.sent.extend(accepted)
        return len(accepted)


async def _call(
    remote: FakeRemoteServer, our_url: str, our_name: str, method: str, path: str, body: Any
) -> Any:
    status, data = await remote.request(method, our_url, path, body, destination=our_name)
    if status != 200:
        raise StreamError(f"{method} {path.split('?')[0]} -> {status} {data}")
    return data


async def _ignore_transaction(request: ReceivedRequest) -> Any:
    # Our server fans its own events out to the remote too; accept them all.
    return {"pdus": {}}


async def join_remote_member(
    remote: FakeRemoteServer, our_url: str, our_name: str, room_id: str, localpart: str
) -> RemoteMember:
    """Join ``@localpart:<remote>`` to ``room_id`` on the resident server (``our_url``,
    named ``our_name``) over federation."""
    remote.add_handler("PUT", "/_matrix/federation/v1/send/{txn_id}", _ignore_transaction)
    user_id = f"@{localpart}:{remote.server_name}"
    versions = "&".join(f"ver={v}" for v in KNOWN_ROOM_VERSIONS)
    make_join = fed_path("/_matrix/federation/v1/make_join/{}/{}", room_id, user_id)
    template = await _call(remote, our_url, our_name, "GET", f"{make_join}?{versions}", None)
    version = KNOWN_ROOM_VERSIONS[template["room_version"]]
    if version.event_id_format is EventIdFormat.OPAQUE_WITH_DOMAIN:
        raise StreamError("the benchmark streams into rooms of version 3 or later")
    join = dict(template["event"])
    join["origin"] = remote.server_name
    join["origin_server_ts"] = int(time.time() * 1000)
    remote.sign_pdu(version, join)
    join_id = remote.event_id(version, join)
    send_join = fed_path("/_matrix/federation/v2/send_join/{}/{}", room_id, join_id)
    answer = await _call(remote, our_url, our_name, "PUT", send_join, join)
    return RemoteMember(
        remote=remote,
        our_url=our_url,
        our_name=our_name,
        room_id=room_id,
        room_version=version,
        user_id=user_id,
        auth_event_ids=_message_auth_events(version, answer.get("state", []), join_id),
        last_event_id=join_id,
        depth=int(join["depth"]),
    )


def _message_auth_events(
    version: RoomVersion, state: Sequence[dict[str, Any]], join_id: str
) -> list[str]:
    wanted = {("m.room.power_levels", "")}
    if not version.room_id_is_create_event_hash:
        # Before v12 the create event is an auth event of everything; in v12 it is implied.
        wanted.add(("m.room.create", ""))
    ids = [
        FakeRemoteServer.event_id(version, pdu)
        for pdu in state
        if (pdu.get("type"), pdu.get("state_key")) in wanted
    ]
    if len(ids) != len(wanted):
        raise StreamError(f"send_join state lacks {sorted(wanted)}")
    return [*ids, join_id]
