"""The redaction filter: every secret shape we know of, in every form a log line may hold it."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator

import pytest

from homeserver.logging.redaction import (
    REDACTED,
    RedactionFilter,
    forget_secrets,
    redact,
    register_secret,
)

TOKEN = "syt_" + "Q2hhbmdlTWVQbGVhc2VfVGhpc0lzQVRlc3RUb2tlbjA"
SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"  # unpadded base64 of 32 bytes
PASSWORD = "correct horse battery staple"

# (description, log text, secrets that must be gone, text that must stay)
CASES: list[tuple[str, str, list[str], list[str]]] = [
    (
        "access_token query parameter",
        f"GET /_matrix/client/v3/sync?since=s1&access_token={TOKEN}&timeout=0",
        [TOKEN],
        ["since=s1", "timeout=0", f"access_token={REDACTED}"],
    ),
    (
        "access_token query parameter, not our format",
        "GET /x?access_token=MDAxOGxvY2F0aW9uIGxvY2FsaG9zdAo",
        ["MDAxOGxvY2F0aW9uIGxvY2FsaG9zdAo"],
        ["GET /x?access_token="],
    ),
    (
        "Authorization header",
        "headers: {'Authorization': 'Bearer some.opaque-token_value'}",
        ["some.opaque-token_value"],
        ["Bearer", "Authorization"],
    ),
    ("Authorization header, lower case", "authorization: bearer abc123def", ["abc123def"], []),
    (
        "our token format anywhere",
        f"token owner lookup failed for {TOKEN}: timeout",
        [TOKEN],
        ["lookup failed", ": timeout"],
    ),
    (
        "password in JSON",
        json.dumps({"type": "m.login.password", "user": "alice", "password": PASSWORD}),
        [PASSWORD],
        ['"user": "alice"', '"type": "m.login.password"'],
    ),
    (
        "new_password in a Python repr",
        repr({"new_password": PASSWORD, "logout_devices": True}),
        [PASSWORD],
        ["'logout_devices': True"],
    ),
    (
        "password with an escaped quote",
        json.dumps({"password": 'a"b' + PASSWORD}),
        [PASSWORD, 'a\\"b'],
        [],
    ),
    (
        "password as key=value",
        f"password={PASSWORD.replace(' ', '')}&x=1",
        ["correcthorse"],
        ["x=1"],
    ),
    (
        "registration shared secret, YAML style",
        "registration_shared_secret: s3cr3t-value",
        ["s3cr3t-value"],
        ["registration_shared_secret"],
    ),
    (
        "password as bytes repr",
        repr({"password": PASSWORD.encode()}),
        [PASSWORD],
        [],
    ),
    (
        "password hashes in SQL parameters",
        "UPDATE users SET password_hash = ? WHERE user_id = ? ('$argon2id$v=19$m=65536,t=3,p=4$"
        "oYUZDVsaltsalt$hashhashhash', '@a:hs') and $2b$12$abcdefghijklmnopqrstuv",
        ["oYUZDVsaltsalt", "hashhashhash", "abcdefghijklmnopqrstuv"],
        ["password_hash = ? WHERE user_id = ?", "'@a:hs'"],
    ),
    (
        "Synapse signing key line",
        f"read key file: ed25519 a_AbCd {SEED}",
        [SEED],
        ["ed25519 a_AbCd"],
    ),
    (
        "PEM private key",
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIPsecretmaterial\n"
        "-----END PRIVATE KEY-----",
        ["MC4CAQAwBQYDK2VwBCIEIPsecretmaterial"],
        [],
    ),
    (
        "message body inside content",
        json.dumps(
            {
                "type": "m.room.message",
                "content": {"msgtype": "m.text", "body": "meet me at {noon}", "m.mentions": {}},
                "sender": "@a:hs",
            }
        ),
        ["meet me at", "m.text"],
        ['"sender": "@a:hs"', '"type": "m.room.message"'],
    ),
    (
        "formatted_body outside content",
        repr({"formatted_body": "<b>private</b>", "format": "org.matrix.custom.html"}),
        ["private"],
        ["org.matrix.custom.html"],
    ),
    (
        "content in a SQL parameter repr (aiosqlite debug)",
        repr(("$ev", b'{"content":{"body":"it\'s secret"},"type":"m.room.message"}', 3)),
        ["secret"],
        ["m.room.message", "$ev"],
    ),
    (
        "content of JSON inside a JSON string",
        json.dumps({"pdu": json.dumps({"content": {"body": 'q"uote} text'}, "depth": 4})}),
        ["uote", "text"],
        ["depth"],
    ),
    (
        "unterminated content (a truncated line)",
        '{"content": {"body": "cut off here',
        ["cut off here"],
        [],
    ),
    (
        "ciphertext of an encrypted event",
        '{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEnACgAkLmt6qF84IK"}',
        ["AwgAEnACgAkLmt6qF84IK"],
        ["m.megolm.v1.aes-sha2"],
    ),
    (
        "ordinary lines are left alone",
        "content hash mismatch on $abc: keeping the redacted copy; body of work",
        [],
        ["content hash mismatch on $abc: keeping the redacted copy; body of work"],
    ),
    (
        "room and user IDs, public keys and event IDs stay",
        '@alice:hs joined !room:hs; key "ed25519:a_AbCd": "pubkeyBase64Value"; $event',
        [],
        ["@alice:hs", "!room:hs", "ed25519:a_AbCd", "pubkeyBase64Value", "$event"],
    ),
]


@pytest.fixture(autouse=True)
def _no_registered_secrets() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


@pytest.mark.parametrize(
    ("text", "gone", "kept"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_redact(text: str, gone: list[str], kept: list[str]) -> None:
    result = redact(text)
    for secret in gone:
        assert secret not in result, result
    for fragment in kept:
        assert fragment in result, result
    assert redact(result) == result  # idempotent: a record passing two handlers


def test_registered_literal_secret_is_scrubbed_anywhere() -> None:
    register_secret(SEED)
    register_secret(SEED + "=")
    assert redact(f"seed={SEED}= and again {SEED}") == f"seed={REDACTED} and again {REDACTED}"
    assert SEED not in redact(f"x{SEED}x")


def test_short_literal_secrets_are_not_registered() -> None:
    register_secret("abc")
    assert redact("abc abc") == "abc abc"


def _record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"bad login {{'password': '{PASSWORD}'}} with {TOKEN}")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("t", logging.INFO, __file__, 1, msg, args or None, exc_info)


def test_filter_redacts_arguments_exception_text_and_stack() -> None:
    record = _record("login of %s with %r", "@a:hs", {"password": PASSWORD}, exc=True)
    record.stack_info = f"Stack (most recent call last):\n  access_token={TOKEN}"
    assert RedactionFilter().filter(record) is True
    formatted = logging.Formatter().format(record)
    assert PASSWORD not in formatted and TOKEN not in formatted
    assert "login of @a:hs with" in formatted
    assert "ValueError: bad login" in formatted  # the traceback is still there


def test_sqlite_driver_calls_are_logged_without_their_parameters() -> None:
    # aiosqlite logs each call as the partial it runs; parameters are user data in plain
    # tuples (a message's words in the search index) that no textual pattern recognises.
    import functools
    import sqlite3

    call = functools.partial(
        sqlite3.Connection.executemany,
        "INSERT INTO event_search (event_id, key, value) VALUES (?, ?, ?)",
        [("$e", "content.body", "meet me at the usual place")],
    )
    record = logging.LogRecord(
        "aiosqlite", logging.DEBUG, __file__, 1, "executing %s", (call,), None
    )
    RedactionFilter().filter(record)
    message = record.getMessage()
    assert "usual place" not in message
    assert "INSERT INTO event_search" in message and "executemany" in message


def test_filter_is_idempotent_and_survives_a_bad_format_call() -> None:
    record = _record("%d items", "not a number")
    RedactionFilter().filter(record)
    RedactionFilter().filter(record)
    assert "unformattable" in record.getMessage()


def test_filter_on_a_handler_covers_every_logger() -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.addFilter(RedactionFilter())
    log = logging.getLogger("tests.logging.redaction")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("request body %s", json.dumps({"password": PASSWORD}))
        try:
            raise RuntimeError(f"Authorization: Bearer {TOKEN}")
        except RuntimeError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
        log.propagate = True
    text = "\n".join(lines)
    assert PASSWORD not in text and TOKEN not in text
    assert "RuntimeError" in text
