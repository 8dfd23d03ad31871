"""Loads the spec's test vectors from ../shared/spec (or HOMESERVER_SPEC_VECTORS)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

_DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "spec" / "spec-test-vectors.json"


def load_vectors() -> dict[str, Any]:
    path = Path(os.environ.get("HOMESERVER_SPEC_VECTORS", _DEFAULT))
    return json.loads(path.read_text(encoding="utf-8"))
