"""History visibility for clients: which events and state a user may read.

:mod:`rules` holds the pure per-event decision; :mod:`client` the entry points every path that
hands room events or state to a client calls (a room-level access check and a batch filter).
"""
