"""Keep secrets and message bodies out of log lines.

``RedactionFilter`` sits on every handler (``configure_logging`` puts it there, whatever the
``log_config`` says) and rewrites the record's message, exception text and stack before any
formatter sees them:

* access tokens: ``access_token=…`` in query strings, ``Authorization: Bearer …``, and anything
  in our token format (``syt_…``) wherever it appears;
* passwords and other secrets: the value of any key whose name holds ``password``, ``secret``,
  ``token`` or ``private_key``, in JSON, Python reprs, ``key=value`` and ``key: value`` forms;
  password hashes (``$argon2id$…``, bcrypt);
* signing keys: ``ed25519 <version> <seed>`` lines (Synapse's key file format), PEM private keys,
  and the literal secrets registered with :func:`register_secret` (the server's own seed);
* message bodies: a ``content`` object is dropped whole, ``body``/``formatted_body`` values too.

Redaction is textual, so it also covers exception messages and reprs of request bodies that a
log call did not mean to include. It is a safety net: log calls still should not pass secrets.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import traceback

REDACTED = "<redacted>"

# A quoted string with backslash escapes, in either quote style, or JSON inside a JSON string
# (``\"...\"``).
_QUOTED = r"(?:\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|\\\"(?:(?!\\\").)*\\\")"
# Key names whose values are secrets (JSON keys, reprs, query parameters, YAML-ish lines).
_SECRET_KEY = (
    r"[A-Za-z0-9_.-]*(?:password|passwd|secret|token|private_key|signing_key)[A-Za-z0-9_-]*"
)
_BODY_KEY = r"(?:formatted_)?body|ciphertext"

_TOKEN_FORMAT = re.compile(r"\bsy[tr]_[A-Za-z0-9_-]{8,}")
_BEARER = re.compile(r"(?i)\b(bearer)(\s+|%20|\+)[^\s'\",;&]+")
# key="value" / 'key': 'value' / key=value / key: value (a bare value ends at a separator;
# a SQL placeholder ``token_hash = ?`` is not a value).
_SECRET_PAIR = re.compile(
    # The lookbehind starts matches at word starts only (it is 4x faster).
    rf"(?i)(?<![A-Za-z0-9_.-])(?P<key>\\?([\"']?){_SECRET_KEY}\\?\2)(?P<sep>\s*(?::|=|%3D)\s*)"
    rf"(?P<value>{_QUOTED}|b{_QUOTED}|[^\s,;&}}\])\"'?]+)"
)
# Password hashes (argon2, and bcrypt from a Synapse import) can be attacked offline.
_PASSWORD_HASH = re.compile(r"\$(?:argon2(?:id|i|d)|2[abxy]?)\$[^\s'\")]+")
_BODY_PAIR = re.compile(
    rf"(?P<key>\\?([\"']?)(?:{_BODY_KEY})\\?\2)(?P<sep>\s*[:=]\s*)(?P<value>{_QUOTED})"
)
# The opening of a ``content`` object; the object itself is found by matching braces.
_CONTENT_OPEN = re.compile(r"\\?([\"'])content\\?\1\s*:\s*\{")
_SIGNING_KEY_LINE = re.compile(r"\b(ed25519\s+\S+\s+)[A-Za-z0-9+/_-]{40,}={0,2}")
_PEM_PRIVATE = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S
)

_ESCAPED_QUOTE = '\\"'

#: words one of which a line must hold for the key/value pass to be worth running (it is the
#: slow one; most lines hold none).
_SECRET_WORDS = ("password", "passwd", "secret", "token", "private_key", "signing_key")

#: registered literals, longest first (replaced whole on registration: read without the lock).
_literal_secrets: tuple[str, ...] = ()
_literal_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Scrub ``value`` wherever it appears from now on (the signing key's seed, say). Values
    shorter than 16 characters are ignored: they would redact ordinary words."""
    global _literal_secrets
    if len(value) >= 16:
        with _literal_lock:
            known = set(_literal_secrets) | {value}
            _literal_secrets = tuple(sorted(known, key=len, reverse=True))


def forget_secrets() -> None:
    """Drop the registered literals (tests)."""
    global _literal_secrets
    with _literal_lock:
        _literal_secrets = ()


def _secret_value(match: re.Match[str]) -> str:
    value = match["value"]
    if value.startswith(("b'", 'b"')):
        value = value[1:]
    quote = value[:2] if value.startswith('\\"') else value[0] if value[:1] in "'\"" else ""
    return f"{match['key']}{match['sep']}{quote}{REDACTED}{quote}"


def _end_of_object(text: str, start: int) -> int:
    """The index just past the ``}`` that closes the ``{`` at ``start - 1`` (quote-aware), or
    the end of the text when it never closes (a truncated line: drop the rest)."""
    depth = 1
    quote = ""
    i = start
    while i < len(text):
        ch = text[i]
        if quote == _ESCAPED_QUOTE:
            # A string of JSON that is itself inside a JSON string: \" opens and closes it,
            # \\\" and \\\\ are an escaped quote and backslash within it.
            if text.startswith((r"\\\"", r"\\\\"), i):
                i += 3
            elif text.startswith(_ESCAPED_QUOTE, i):
                quote = ""
                i += 1
            elif ch == "\\":
                i += 1
        elif quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif text.startswith(_ESCAPED_QUOTE, i):
            quote = _ESCAPED_QUOTE
            i += 1
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(text)


def _drop_content_objects(text: str) -> str:
    out: list[str] = []
    position = 0
    while (match := _CONTENT_OPEN.search(text, position)) is not None:
        out.append(text[position : match.end() - 1])
        out.append(REDACTED)
        position = _end_of_object(text, match.end())
    out.append(text[position:])
    return "".join(out)


def redact(text: str) -> str:
    """``text`` with every secret and message body it holds replaced by ``<redacted>``."""
    if not text:
        return text
    for literal in _literal_secrets:
        if literal in text:
            text = text.replace(literal, REDACTED)
    # Each pass runs only when its cheap substring test says it could match: this runs for
    # every log line, the access log's included.
    lower = text.lower()
    if "private key" in lower:
        text = _PEM_PRIVATE.sub(REDACTED, text)
    if "ed25519" in lower:
        text = _SIGNING_KEY_LINE.sub(rf"\g<1>{REDACTED}", text)
    if "$" in text:
        text = _PASSWORD_HASH.sub(REDACTED, text)
    if "content" in text:
        text = _drop_content_objects(text)
    if "body" in text or "ciphertext" in text:
        text = _BODY_PAIR.sub(_secret_value, text)
    if any(word in lower for word in _SECRET_WORDS):
        text = _SECRET_PAIR.sub(_secret_value, text)
    if "bearer" in lower:
        text = _BEARER.sub(rf"\g<1>\g<2>{REDACTED}", text)
    if "syt_" in text or "syr_" in text:
        text = _TOKEN_FORMAT.sub(REDACTED, text)
    return text


class RedactionFilter(logging.Filter):
    """Rewrites a record in place (message, exception text, stack) with :func:`redact`.

    The message is formatted here (``msg % args``) so that secrets passed as arguments are
    caught too; the record then carries the finished text and no arguments. Idempotent: a record
    that goes through several handlers is redacted once."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_homeserver_redacted", False):
            return True
        if record.name == "aiosqlite":
            _drop_sql_parameters(record)
        try:
            message = record.getMessage()
        except Exception:  # a broken format call: keep what can be shown
            message = f"{record.msg!r} (unformattable arguments)"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._homeserver_redacted = True
        return True


def _drop_sql_parameters(record: logging.LogRecord) -> None:
    """aiosqlite logs each call at DEBUG as the ``functools.partial`` it runs, parameters and
    all: message text (the search index), display names (the user directory) and other user data
    in plain tuples that no textual pattern can tell apart. Keep the method and the statement."""
    if not isinstance(record.args, tuple):
        return
    record.args = tuple(_describe_call(a) for a in record.args)


def _describe_call(arg: object) -> object:
    if not isinstance(arg, functools.partial):
        return arg
    name = getattr(arg.func, "__name__", "call")
    statement = arg.args[0] if arg.args and isinstance(arg.args[0], str) else ""
    return f"{name}({statement!r}, <parameters not logged>)"
