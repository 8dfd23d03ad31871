"""Streams: the positions clients and servers read from, below every service.

Stream tokens, the notifier that wakes long polls, and the rows written in an event's or a
device change's own transaction for other servers (the outbox fan-out). Services write through
these; nothing here imports a service.
"""
