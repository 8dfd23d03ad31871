"""The /sync service: what a client missed since its token, room by room and section by section."""
