"""Services behind the admin API: what an operator may read and do beyond the client API."""
