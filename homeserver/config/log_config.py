"""``log_config``: a Python ``logging.config.dictConfig`` YAML file, as in Synapse."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from homeserver.config._reader import Reader

KEYS = frozenset({"log_config"})


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    #: None: log INFO and above to stderr.
    log_config: Path | None


def parse_logging(reader: Reader) -> LoggingConfig:
    path = reader.path_value("log_config")
    # Checked now rather than when logging starts, so the one-line config error names the key.
    if path is not None and not path.is_file():
        raise reader.error("log_config", f"file not found: {path}")
    return LoggingConfig(log_config=path)
