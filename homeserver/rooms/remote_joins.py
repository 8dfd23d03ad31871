"""What the membership gate needs from federation to join, knock on or leave a room none of our
users is in, as a protocol: the room services sit below federation, so they name the capability
and the wiring hands them ``federation/remote_membership.py``, which implements it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from homeserver.types import domain_of


class RemoteJoins(Protocol):
    async def join(
        self, user_id: str, room_id: str, servers: Sequence[str], content: dict[str, Any]
    ) -> None: ...

    async def join_through_resident(
        self, user_id: str, room_id: str, servers: Sequence[str], content: dict[str, Any]
    ) -> str: ...

    async def knock(
        self, user_id: str, room_id: str, servers: Sequence[str], content: dict[str, Any]
    ) -> str: ...

    async def reject_invite(
        self, user_id: str, room_id: str, content: dict[str, Any]
    ) -> None: ...


def candidate_servers(
    given: Sequence[str], room_id: str, our_server: str, *extra: str | None
) -> list[str]:
    """Servers to try, in order: those the client named, then ``extra`` (the alias's servers,
    the inviter's), then the room ID's own server (v1-11 IDs name one); never ourselves."""
    ordered: list[str] = [*given, *(s for s in extra if s)]
    if ":" in room_id:
        ordered.append(domain_of(room_id))
    return [s for s in dict.fromkeys(ordered) if s and s != our_server]
