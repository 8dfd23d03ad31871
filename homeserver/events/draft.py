"""What a client or service asks to send; the builder adds everything else."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class EventDraft:
    type: str
    sender: str
    content: dict[str, Any] = field(default_factory=dict)
    state_key: str | None = None
    redacts: str | None = None

    def is_state(self) -> bool:
        return self.state_key is not None
