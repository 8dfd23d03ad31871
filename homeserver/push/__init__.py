"""Push rules: the server-default rule set and each user's rules on top of it."""
