"""Canonical JSON, hashes, ed25519 signing, and the signing key at rest. Pure, no I/O."""
