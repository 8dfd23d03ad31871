"""Ephemeral state shared with a room or a user's contacts: typing notifications (in memory)
and presence (stored), each sent to other servers as EDUs and shown in /sync."""
