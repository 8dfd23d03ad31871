"""Logging for operators: JSON lines with request/user/room/transaction context, secrets
redacted from every line, ``log_config`` applied at start-up and on SIGHUP."""

from homeserver.logging.context import LogContextFilter as LogContextFilter
from homeserver.logging.json_format import JsonFormatter as JsonFormatter
from homeserver.logging.per_request import PerRequestLogger as PerRequestLogger
from homeserver.logging.redaction import RedactionFilter as RedactionFilter
from homeserver.logging.redaction import redact as redact
from homeserver.logging.redaction import register_secret as register_secret
from homeserver.logging.setup import LogConfigError as LogConfigError
from homeserver.logging.setup import LoggingSetup as LoggingSetup
