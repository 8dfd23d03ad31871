"""History visibility: which events and state a user, or another server, may read.

One module for both audiences (DESIGN §8): :mod:`rules` holds the pure per-event decisions
(clients, servers, and the state at a point); :mod:`state_at` the one way both sides read the
state at each event of a batch; :mod:`client` the entry points every path that hands room events
or state to a client calls (a room-level access check and a batch filter); :mod:`server` the
batch judging federation serving calls.
"""
