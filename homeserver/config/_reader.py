"""Typed, path-aware reading of the parsed YAML.

Every accessor names the failing key by its full path ("listeners[0].port") so the operator sees
exactly which line to fix. A reader also remembers which keys it consumed, so that the keys nobody
asked for can be reported as unknown (a warning, as Synapse does, never an error).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_MISSING: Any = object()


class ConfigError(Exception):
    """A bad config value. ``key_path`` names it ("listeners[0].port"), ``message`` says why."""

    def __init__(self, key_path: str, message: str) -> None:
        super().__init__(f"{key_path}: {message}" if key_path else message)
        self.key_path = key_path
        self.message = message


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)?\s*$")
_DURATION_SECONDS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "y": 365 * 86400,
}


class Reader:
    """A view of one mapping in the config, at ``path``, relative to ``config_dir``."""

    def __init__(
        self,
        data: Mapping[str, Any],
        path: str,
        config_dir: Path,
        warnings: list[str],
    ) -> None:
        self.data = data
        self.path = path
        self.config_dir = config_dir
        self.warnings = warnings
        self._consumed: set[str] = set()

    # -- structure -----------------------------------------------------------------------------

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str, default: Any = None) -> Any:
        self._consumed.add(key)
        value = self.data.get(key)
        # YAML writes an absent value as null ("key:" alone); treat it as "not set".
        return default if value is None else value

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.key_path(key), message)

    def sub(self, key: str, *, required: bool = False) -> Reader:
        """A reader of the mapping at ``key`` (an empty one if absent and not required)."""
        value = self.raw(key, _MISSING)
        if value is _MISSING:
            if required:
                raise self.error(key, "is required")
            value = {}
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be a mapping, not {_type_name(value)}")
        return Reader(value, self.key_path(key), self.config_dir, self.warnings)

    def sub_list(self, key: str) -> Iterator[tuple[str, Any]]:
        """``(item_path, item)`` for each item of the list at ``key`` (none if absent)."""
        value = self.raw(key, [])
        if not isinstance(value, list):
            raise self.error(key, f"must be a list, not {_type_name(value)}")
        for index, item in enumerate(value):
            yield f"{self.key_path(key)}[{index}]", item

    def item_reader(self, item_path: str, item: Any) -> Reader:
        if not isinstance(item, Mapping):
            raise ConfigError(item_path, f"must be a mapping, not {_type_name(item)}")
        return Reader(item, item_path, self.config_dir, self.warnings)

    def warn_unknown(self, known: frozenset[str] | None = None) -> None:
        """Record a warning for each key of this mapping that nothing read."""
        expected = self._consumed if known is None else self._consumed | known
        for key in self.data:
            if key not in expected:
                self.warnings.append(f"unknown config key {self.key_path(str(key))!r} ignored")

    # -- scalars -------------------------------------------------------------------------------

    def string(self, key: str, default: T = _MISSING) -> str | T:
        value = self.raw(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise self.error(key, "is required")
            return default
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {_type_name(value)}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        # int 0/1 are not booleans in YAML; accepting them would hide typos such as "tls: 1".
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {_type_name(value)}")
        return value

    def integer(
        self,
        key: str,
        default: int | None = None,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        value = self.raw(key, _MISSING)
        if value is _MISSING:
            if default is None:
                raise self.error(key, "is required")
            value = default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, not {_type_name(value)}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}, not {value}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be at most {maximum}, not {value}")
        return value

    def number(self, key: str, default: float, *, minimum: float | None = None) -> float:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, not {_type_name(value)}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}, not {value}")
        return float(value)

    def path_value(self, key: str, default: Path | None = None) -> Path | None:
        """A filesystem path; relative paths are relative to the config file's directory."""
        value = self.raw(key, _MISSING)
        if value is _MISSING:
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, "must be a non-empty path")
        return resolve_path(self.config_dir, value)

    def duration_seconds(self, key: str, default: float, *, bare_number_unit: str) -> float:
        """A duration: a number in ``bare_number_unit`` ("s" or "ms") or a string such as "5m".

        Synapse's own duration keys read a bare number as milliseconds; keys new to this server
        say which unit they take in config.sample.yaml.
        """
        value = self.raw(key, _MISSING)
        if value is _MISSING:
            return default
        if isinstance(value, bool):
            raise self.error(key, "must be a duration such as 30s, 5m, 1h or a number")
        if isinstance(value, int | float):
            seconds = float(value) * _DURATION_SECONDS[bare_number_unit]
        elif isinstance(value, str) and (match := _DURATION.match(value)):
            amount, unit = match.groups()
            seconds = float(amount) * _DURATION_SECONDS[unit or bare_number_unit]
        else:
            raise self.error(key, f"must be a duration such as 30s, 5m, 1h, not {value!r}")
        if seconds <= 0:
            raise self.error(key, "must be a positive duration")
        return seconds

    def string_list(self, key: str, default: list[str] | None = None) -> list[str] | None:
        value = self.raw(key, _MISSING)
        if value is _MISSING:
            return default
        if not isinstance(value, list):
            raise self.error(key, f"must be a list, not {_type_name(value)}")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(
                    f"{self.key_path(key)}[{index}]", f"must be a string, not {_type_name(item)}"
                )
        return list(value)


def resolve_path(config_dir: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else config_dir / path
