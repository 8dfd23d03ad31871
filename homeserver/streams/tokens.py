"""Stream tokens: positions in the server's streams, opaque to clients.

``s{events}_{account_data}_{receipts}_{to_device}_{device_lists}_{typing}_{presence}_{push}``:
``events`` is a stream ordering (every persisted event has one), the others are positions of
their own streams (``typing`` lives in the process's memory, see
``homeserver.ephemeral.typing``). A token only ever carries a stream's persisted-up-to position
(``homeserver.storage.stream_ids``): everything at or below it is committed, so a reader that
continues from it never skips a write committed later. Shorter tokens (``s42``, ``s42_3_7``
from before to-device, device lists, typing and presence existed) are accepted too, their
missing parts being 0; /messages pagination tokens are the same shape, so a sync
``prev_batch`` can be handed straight to /messages. ``sP`` means "just after the event at
position P": /messages backwards from it returns events at positions <= P.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from homeserver.errors import BadRequest, Codes

#: positions are BIGINT columns; anything larger is a forged token, not a position.
MAX_POSITION = 2**63 - 1


@dataclass(frozen=True, slots=True)
class StreamToken:
    events: int = 0
    account_data: int = 0
    receipts: int = 0
    #: to-device messages (device_inbox) delivered up to here.
    to_device: int = 0
    #: device-list changes (device_list_changes) reported up to here.
    device_lists: int = 0
    #: typing notifications (in memory) reported up to here.
    typing: int = 0
    #: presence changes reported up to here.
    presence: int = 0
    #: push-rule evaluation (notification counts) reported up to here: a stream ordering.
    push: int = 0

    def __str__(self) -> str:
        return (
            f"s{self.events}_{self.account_data}_{self.receipts}"
            f"_{self.to_device}_{self.device_lists}_{self.typing}_{self.presence}_{self.push}"
        )

    def with_events(self, events: int) -> StreamToken:
        return replace(self, events=events)

    @staticmethod
    def parse(text: str, *, param: str = "since") -> StreamToken:
        if not text.startswith("s"):
            raise BadRequest(f"Invalid {param} token", Codes.INVALID_PARAM)
        try:
            parts = [int(p) for p in text[1:].split("_")]
        except ValueError:
            raise BadRequest(f"Invalid {param} token", Codes.INVALID_PARAM) from None
        if not 1 <= len(parts) <= len(fields(StreamToken)) or any(
            not 0 <= p <= MAX_POSITION for p in parts
        ):
            raise BadRequest(f"Invalid {param} token", Codes.INVALID_PARAM)
        return StreamToken(*parts)
