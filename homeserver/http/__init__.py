"""The HTTP layer: parse, call one service, serialise. Built per listener by homeserver.app."""
