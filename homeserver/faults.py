"""Named fault points for crash tests.

A step of a lifecycle operation calls ``fault_point("upgrade.committing")``; when the process was
started with ``HOMESERVER_FAULT_POINT`` naming that point, the process kills itself there with
SIGKILL (no cleanup, no flush: a real crash). Unset — always, outside tests — it costs one dict
lookup.

Points: ``create.validated``, ``create.built``, ``create.committing`` (inside the transaction,
before COMMIT), ``create.committed`` (after COMMIT, before the after-commit work);
``upgrade.locked``, ``upgrade.planned``, ``upgrade.built``, ``upgrade.committing``,
``upgrade.committed``.
"""

from __future__ import annotations

import os
import signal

ENV_VAR = "HOMESERVER_FAULT_POINT"


def fault_point(name: str) -> None:
    if os.environ.get(ENV_VAR) == name:
        os.kill(os.getpid(), signal.SIGKILL)
