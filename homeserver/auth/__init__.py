"""Authorisation of room events: power levels, auth-event selection, the auth rules of room
versions 1-12, and state resolution. Everything here is pure (no I/O): callers fetch the events
and pass them in.
"""
