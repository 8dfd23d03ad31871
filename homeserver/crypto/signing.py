"""ed25519 signing and verification of JSON objects.

Keys are signedjson/PyNaCl key objects (``.alg``, ``.version``). Events are signed in their
redacted form, which depends on the room version: that lives in ``events/signing.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey
from signedjson.key import decode_signing_key_base64, generate_signing_key, get_verify_key

from homeserver.crypto.base64 import decode_base64, encode_base64
from homeserver.crypto.canonical_json import encode_canonical_json

__all__ = [
    "SignatureError",
    "decode_signing_key_base64",
    "generate_signing_key",
    "get_verify_key",
    "key_id",
    "sign_json",
    "signature_of",
    "signatures_of",
    "verify_json",
]


class SignatureError(Exception):
    pass


def key_id(key: SigningKey | VerifyKey) -> str:
    return f"{key.alg}:{key.version}"  # type: ignore[union-attr]


def signature_of(signing_key: SigningKey, signed_bytes: bytes) -> str:
    return encode_base64(signing_key.sign(signed_bytes).signature)


#: below this many messages one thread signs them all: a hand-over to another thread costs
#: about what a few signatures do.
PARALLEL_SIGNING_FROM = 32
_signing_pool: ThreadPoolExecutor | None = None
_signing_pool_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _signing_pool
    with _signing_pool_lock:
        if _signing_pool is None:
            _signing_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="signing")
        return _signing_pool


def signatures_of(signing_key: SigningKey, messages: Sequence[bytes]) -> list[str]:
    """:func:`signature_of` each of ``messages``, in order. A long list is split with one
    worker thread: libsodium releases the GIL while it signs (PyNaCl's cffi bindings), so the
    two halves run on two cores, where ed25519 is most of what building an event costs."""
    if len(messages) < PARALLEL_SIGNING_FROM:
        return [signature_of(signing_key, m) for m in messages]
    half = len(messages) // 2
    first = _pool().submit(lambda: [signature_of(signing_key, m) for m in messages[:half]])
    rest = [signature_of(signing_key, m) for m in messages[half:]]
    return first.result() + rest


def sign_json(obj: dict[str, Any], server_name: str, signing_key: SigningKey) -> dict[str, Any]:
    """Add this server's signature to ``obj`` in place (and return it)."""
    signatures = obj.pop("signatures", {})
    unsigned = obj.pop("unsigned", None)
    signature = signature_of(signing_key, encode_canonical_json(obj))
    signatures.setdefault(server_name, {})[key_id(signing_key)] = signature
    obj["signatures"] = signatures
    if unsigned is not None:
        obj["unsigned"] = unsigned
    return obj


def verify_json(
    obj: Mapping[str, Any], server_name: str, key_id_: str, verify_key: VerifyKey
) -> None:
    """Raise :class:`SignatureError` unless ``obj`` carries a valid signature by this key."""
    try:
        signature_b64 = obj["signatures"][server_name][key_id_]
    except (KeyError, TypeError) as e:
        raise SignatureError(f"no signature from {server_name} {key_id_}") from e
    if not isinstance(signature_b64, str):
        raise SignatureError("signature is not a string")
    try:
        signature = decode_base64(signature_b64)
    except ValueError as e:
        raise SignatureError("signature is not valid base64") from e
    unsigned_obj = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    try:
        verify_key.verify(encode_canonical_json(unsigned_obj), signature)
    except (BadSignatureError, ValueError) as e:
        raise SignatureError(f"bad signature from {server_name} {key_id_}") from e
