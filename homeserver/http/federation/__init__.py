"""The server-server API under ``/_matrix/federation``."""
