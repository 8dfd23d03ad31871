"""A Matrix homeserver whose heart is the room lifecycle."""

__version__ = "0.1.0"
