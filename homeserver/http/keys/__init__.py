"""The key server under ``/_matrix/key/v2``."""
