"""The client-server API under ``/_matrix/client``."""
