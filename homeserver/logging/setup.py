"""Applying ``log_config`` at start-up and again on SIGHUP.

Without a ``log_config`` the server logs INFO and above to stderr, one JSON object per line.
With one, the file is a ``logging.config.dictConfig`` YAML (Synapse's format). Either way every
handler gets the redaction and context filters, so no configuration can log a secret.

A reload that fails (unreadable file, bad YAML, a handler that cannot be built) logs an error and
leaves the previous configuration in force.
"""

from __future__ import annotations

import copy
import logging
import logging.config
from pathlib import Path
from typing import Any

import yaml

from homeserver.logging.context import LogContextFilter
from homeserver.logging.redaction import RedactionFilter

logger = logging.getLogger(__name__)

DEFAULT_SETTINGS: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "homeserver.logging.json_format.JsonFormatter"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"level": "INFO", "handlers": ["stderr"]},
}


class LogConfigError(Exception):
    """The file cannot be applied; the message is one line naming the reason."""


def load_settings(path: Path | None) -> dict[str, Any]:
    """The dictConfig mapping for ``path`` (None: the JSON-lines default)."""
    if path is None:
        return copy.deepcopy(DEFAULT_SETTINGS)
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise LogConfigError(_one_line(e)) from None
    if not isinstance(settings, dict):
        raise LogConfigError("the file must hold a mapping (a dictConfig)")
    # A Synapse log config says ``disable_existing_loggers: false``; without it dictConfig would
    # silence every logger created before it ran, which is all of ours.
    settings.setdefault("disable_existing_loggers", False)
    return settings


class LoggingSetup:
    """Owns the process's logging configuration: applies it and re-applies it on reload."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._applied: dict[str, Any] | None = None

    def apply(self) -> None:
        """Apply the file (or the default). Raises LogConfigError, leaving the previous
        configuration (if any) in force."""
        settings = load_settings(self.path)
        previous = self._applied
        try:
            _apply(settings, previous)
        except (ValueError, TypeError, AttributeError, ImportError, OSError) as e:
            # dictConfig closes the old handlers before it builds the new ones: put them back.
            if previous is not None:
                _apply(copy.deepcopy(previous), None)
            raise LogConfigError(_one_line(e)) from None
        self._applied = settings

    def reload(self) -> bool:
        """SIGHUP: re-read and re-apply; on failure log an error and keep the old config."""
        try:
            self.apply()
        except LogConfigError as e:
            logger.error("log_config %s not reloaded, keeping the previous one: %s", self.path, e)
            return False
        logger.info("log_config %s reloaded", self.path or "(default)")
        return True


def _apply(settings: dict[str, Any], previous: dict[str, Any] | None) -> None:
    if previous is not None:
        # Loggers the old file configured and the new one does not go back to inheriting.
        for name in set(previous.get("loggers", {})) - set(settings.get("loggers", {})):
            named = logging.getLogger(name)
            named.setLevel(logging.NOTSET)
            named.propagate = True
    logging.config.dictConfig(copy.deepcopy(settings))
    install_filters()


def all_handlers() -> list[logging.Handler]:
    handlers: list[logging.Handler] = list(logging.getLogger().handlers)
    for candidate in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(candidate, logging.Logger):
            handlers.extend(candidate.handlers)
    # A buffering handler (MemoryHandler) passes records on to its target unfiltered.
    handlers.extend(
        target
        for handler in list(handlers)
        if isinstance(target := getattr(handler, "target", None), logging.Handler)
    )
    return handlers


def install_filters() -> None:
    """Put the context and redaction filters on every handler that lacks them."""
    for handler in all_handlers():
        kinds = {type(f) for f in handler.filters}
        if LogContextFilter not in kinds:
            handler.addFilter(LogContextFilter())
        if RedactionFilter not in kinds:
            handler.addFilter(RedactionFilter())


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
