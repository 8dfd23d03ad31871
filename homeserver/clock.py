"""Wall-clock time in milliseconds, injectable so tests can fix the time."""

from __future__ import annotations

import time
from collections.abc import Callable

#: Returns milliseconds since the Unix epoch, the unit of ``origin_server_ts``/``valid_until_ts``.
WallClock = Callable[[], int]


def time_ms() -> int:
    return int(time.time() * 1000)
